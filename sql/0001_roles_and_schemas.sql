-- 0001: cluster roles, schemas, Supabase-compatible identity, shared helpers.
--
-- Roles are cluster-global: other databases on the same server (tests run many in parallel)
-- create them concurrently, so each CREATE ROLE checks pg_roles and tolerates losing the race.
-- Roles are never dropped or altered here.

-- Fail fast instead of queueing behind live traffic (the runner wraps each file in a transaction).
SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

DO $roles$
DECLARE
    r text;
BEGIN
    -- smartbuy_*: group roles granted to login roles. anon/authenticated: as on Supabase.
    FOREACH r IN ARRAY ARRAY['smartbuy_pipeline', 'smartbuy_analyst', 'smartbuy_ops', 'anon', 'authenticated']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN%s', r,
                    CASE WHEN r IN ('anon', 'authenticated') THEN ' NOINHERIT' ELSE '' END);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- created concurrently by another database's migration
            END;
        END IF;
    END LOOP;
END
$roles$;

-- Nothing is executable by PUBLIC unless granted explicitly (functions created later by the
-- migration owner in this database included). Tables never get PUBLIC grants.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Supabase ships default privileges granting ALL on new public tables to anon/authenticated;
-- here every grant is explicit, so drop those defaults (a no-op where they do not exist).
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM anon, authenticated;

GRANT USAGE ON SCHEMA public TO smartbuy_pipeline, smartbuy_analyst, smartbuy_ops, anon, authenticated;

-- analytics: materialized/derived tables for analysts. Empty for now.
CREATE SCHEMA IF NOT EXISTS analytics;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;
GRANT USAGE ON SCHEMA analytics TO smartbuy_analyst, smartbuy_pipeline, smartbuy_ops;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO smartbuy_analyst, smartbuy_ops;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO smartbuy_pipeline;

-- Supabase-compatible identity. On real Supabase these exist already and are left untouched.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text,
    raw_user_meta_data jsonb,
    created_at         timestamptz DEFAULT now()
);

DO $uid$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        -- As PostgREST sets them: request.jwt.claim.sub (old) or request.jwt.claims (JSON).
        CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            SET search_path = ''
            AS $fn$
                SELECT COALESCE(
                    NULLIF(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
                    (NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $fn$;
        REVOKE EXECUTE ON FUNCTION auth.uid() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, smartbuy_pipeline, smartbuy_ops;
        -- Only our own copy of the schema is locked down; Supabase manages its own.
        REVOKE ALL ON SCHEMA auth FROM PUBLIC;
        REVOKE ALL ON TABLE auth.users FROM PUBLIC;
    END IF;
END
$uid$;

-- USAGE lets RLS policies call auth.uid(); it gives no access to auth.users (no table grant).
GRANT USAGE ON SCHEMA auth TO anon, authenticated;

-- updated_at maintenance for every table that has the column.
CREATE FUNCTION public.fn_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
    AS $fn$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.fn_set_updated_at() FROM PUBLIC;
