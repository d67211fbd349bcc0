-- 0017: a channel's secret is write-only for app users.
--
-- 0006 granted `authenticated` SELECT on every column of notification_channels, so the app API
-- (PostgREST as the signed-in user) returned each webhook's HMAC secret to any member of its
-- household, and to anything that reads the app's responses. Members still create and rotate it
-- (INSERT and UPDATE keep every column); reading it is for the dispatcher (smartbuy_pipeline)
-- alone. The target stays readable: it is the member's own address or URL and the app shows it.
-- An app request that returns rows must name its columns (`select=id,kind,...`,
-- `Prefer: return=minimal` on writes): `*` now includes a column it may not read.

SET LOCAL lock_timeout = '10s';

REVOKE SELECT ON public.notification_channels FROM authenticated;
GRANT SELECT (id, household_id, kind, target, enabled, created_at, disabled_reason, disabled_at)
    ON public.notification_channels TO authenticated;
