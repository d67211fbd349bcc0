-- 0015: per-check bookkeeping moves out of `offers` into the narrow `offer_checks`.
--
-- Every hourly check of an offer changes its check time, validators and failure counters, but
-- only a few checks change its price or availability. Written on `offers`, each check rewrote
-- a wide row (locator, prices, ...) and ran its 15 CHECK constraints, its trigger WHEN clause
-- and its foreign-key bookkeeping: the largest cost of the tracker's batch write path. Here a
-- check updates one narrow row (HOT: the primary key is its only index), and `offers` is
-- written only when the offer's content changes (db/prices.py).
--
-- One row per offer, kept by statement-level triggers on `offers` (set-based, from the
-- transition tables) instead of a foreign key: an FK would add a per-row check to every update
-- of the hot path, and offers are deactivated, never deleted (as for price_history, 0004).

SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

CREATE TABLE public.offer_checks (
    offer_id             bigint PRIMARY KEY,
    last_checked_at      timestamptz,
    last_success_at      timestamptz,
    -- validators of the last successful response, for the next conditional GET
    etag                 text,
    last_modified        text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_failure_reason  text,
    unhealthy_until      timestamptz,  -- backed off until then after repeated failures
    CONSTRAINT offer_checks_consecutive_failures_non_negative CHECK (consecutive_failures >= 0),
    CONSTRAINT offer_checks_last_failure_reason_valid CHECK (last_failure_reason IN (
        'timeout', 'connection_error', 'http_4xx', 'http_5xx', 'not_found', 'rate_limited',
        'bot_wall', 'body_too_large', 'ssrf_refused', 'parse_error', 'no_price',
        'unparseable_price', 'non_positive_price', 'currency_missing', 'currency_mismatch',
        'item_missing'
    ))
) WITH (fillfactor = 50);  -- a batch updates every row of a page in one transaction: room for HOT

INSERT INTO public.offer_checks (offer_id, last_checked_at, last_success_at, etag, last_modified,
                                 consecutive_failures, last_failure_reason, unhealthy_until)
SELECT id, last_checked_at, last_success_at, etag, last_modified, consecutive_failures,
       last_failure_reason, unhealthy_until
FROM public.offers;

-- Every reader moved to offer_checks in the same release (the pipeline is this database's only
-- client besides analysts, whose docs name offer_checks).
ALTER TABLE public.offers
    -- squawk-ignore ban-drop-column
    DROP COLUMN last_checked_at,
    -- squawk-ignore ban-drop-column
    DROP COLUMN last_success_at,
    -- squawk-ignore ban-drop-column
    DROP COLUMN etag,
    -- squawk-ignore ban-drop-column
    DROP COLUMN last_modified,
    -- squawk-ignore ban-drop-column
    DROP COLUMN consecutive_failures,
    -- squawk-ignore ban-drop-column
    DROP COLUMN last_failure_reason,
    -- squawk-ignore ban-drop-column
    DROP COLUMN unhealthy_until;

-- offers is now written only on content changes: a few percent of the rows an hour. 10% free
-- room per page keeps those updates HOT (no write to the offers indexes); 0014's 45 was for an
-- update of every row every hour. New pages only.
ALTER TABLE public.offers SET (fillfactor = 90);

CREATE FUNCTION public.fn_offer_checks_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
    AS $fn$
BEGIN
    INSERT INTO public.offer_checks (offer_id) SELECT n.id FROM new_offers n;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION public.fn_offer_checks_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
    AS $fn$
BEGIN
    DELETE FROM public.offer_checks c USING old_offers o WHERE c.offer_id = o.id;
    RETURN NULL;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.fn_offer_checks_insert() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.fn_offer_checks_delete() FROM PUBLIC;

CREATE TRIGGER offers_add_checks AFTER INSERT ON public.offers
    REFERENCING NEW TABLE AS new_offers
    FOR EACH STATEMENT EXECUTE FUNCTION public.fn_offer_checks_insert();
CREATE TRIGGER offers_drop_checks AFTER DELETE ON public.offers
    REFERENCING OLD TABLE AS old_offers
    FOR EACH STATEMENT EXECUTE FUNCTION public.fn_offer_checks_delete();

GRANT SELECT, INSERT, UPDATE, DELETE ON public.offer_checks TO smartbuy_pipeline, smartbuy_ops;
GRANT SELECT ON public.offer_checks TO smartbuy_analyst;
