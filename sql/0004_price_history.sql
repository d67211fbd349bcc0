-- 0004: price_history, append-only, range-partitioned by calendar month (UTC) on observed_at.
--
-- No foreign key to offers: it would add a lookup per row to COPY, the pipeline's write path.
-- Offers are deactivated, never deleted, so history never dangles.

-- Fail fast instead of queueing behind live traffic (the runner wraps each file in a transaction).
SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

CREATE TABLE public.price_history (
    offer_id        bigint NOT NULL,
    observed_at     timestamptz NOT NULL,
    price           numeric(12, 2),  -- NULL only when out of stock with no price shown
    currency        char(3) NOT NULL,
    reference_price numeric(12, 2),
    freight         numeric(12, 2),
    availability    text NOT NULL,
    status          text NOT NULL,
    source_kind     text NOT NULL,
    details         jsonb,
    run_key         text,
    PRIMARY KEY (offer_id, observed_at),
    CONSTRAINT price_history_price_positive CHECK (price > 0),
    CONSTRAINT price_history_reference_price_positive CHECK (reference_price > 0),
    CONSTRAINT price_history_freight_non_negative CHECK (freight >= 0),
    CONSTRAINT price_history_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT price_history_availability_valid CHECK (
        availability IN ('in_stock', 'out_of_stock', 'preorder', 'backorder', 'discontinued', 'unknown')
    ),
    CONSTRAINT price_history_status_valid CHECK (status IN ('accepted', 'quarantined')),
    CONSTRAINT price_history_source_kind_valid CHECK (source_kind IN ('page', 'merchant_feed', 'marketplace_api'))
) PARTITION BY RANGE (observed_at);

-- Catches anything outside the monthly partitions so an insert never fails.
CREATE TABLE public.price_history_default PARTITION OF public.price_history DEFAULT;

-- Window scans over all offers ("everything observed yesterday"): BRIN suits append-only time data.
CREATE INDEX price_history_observed_at_brin ON public.price_history USING brin (observed_at);

-- Append-only: UPDATE raises for everyone. A row trigger on the partitioned parent is cloned
-- onto every partition, including partitions created later.
CREATE FUNCTION public.fn_price_history_no_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
    AS $fn$
BEGIN
    RAISE EXCEPTION 'price_history is append-only: UPDATE is not allowed'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new observation instead';
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.fn_price_history_no_update() FROM PUBLIC;

CREATE TRIGGER price_history_no_update BEFORE UPDATE ON public.price_history
    FOR EACH ROW EXECUTE FUNCTION public.fn_price_history_no_update();

-- Create the monthly partitions price_history_yYYYYmMM for p_months months starting with the
-- month containing p_from (UTC month boundaries), if missing. Rows already caught by the default
-- partition for such a month are moved into the new partition. Idempotent and safe to call
-- concurrently (advisory lock). Returns the number of partitions created.
CREATE FUNCTION public.fn_ensure_price_history_partitions(p_from date, p_months integer)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = ''
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO, YMD'
    AS $fn$
DECLARE
    v_first   date;
    v_month   date;
    v_lo      timestamptz;
    v_hi      timestamptz;
    v_name    text;
    v_created integer := 0;
BEGIN
    IF p_from IS NULL OR p_months IS NULL OR p_months < 1 OR p_months > 120 THEN
        RAISE EXCEPTION 'fn_ensure_price_history_partitions: p_from must be set and p_months in 1..120 (got %, %)',
            p_from, p_months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('smartbuy.price_history.partitions'));

    v_first := pg_catalog.make_date(
        pg_catalog.date_part('year', p_from)::integer, pg_catalog.date_part('month', p_from)::integer, 1);
    FOR i IN 0 .. p_months - 1 LOOP
        v_month := (v_first + pg_catalog.make_interval(months => i))::date;
        v_lo := v_month::timestamp AT TIME ZONE 'UTC';
        v_hi := (v_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        v_name := 'price_history_y' || pg_catalog.to_char(v_month, 'YYYY') || 'm' || pg_catalog.to_char(v_month, 'MM');
        CONTINUE WHEN pg_catalog.to_regclass('public.' || v_name) IS NOT NULL;

        IF EXISTS (
            SELECT 1 FROM public.price_history_default d WHERE d.observed_at >= v_lo AND d.observed_at < v_hi
        ) THEN
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I (LIKE public.price_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                v_name);
            EXECUTE pg_catalog.format(
                'WITH moved AS (DELETE FROM public.price_history_default'
                ' WHERE observed_at >= %L AND observed_at < %L RETURNING *)'
                ' INSERT INTO public.%I SELECT * FROM moved',
                v_lo, v_hi, v_name);
            EXECUTE pg_catalog.format(
                'ALTER TABLE public.price_history ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                v_name, v_lo, v_hi);
        ELSE
            EXECUTE pg_catalog.format(
                'CREATE TABLE public.%I PARTITION OF public.price_history FOR VALUES FROM (%L) TO (%L)',
                v_name, v_lo, v_hi);
        END IF;
        v_created := v_created + 1;
    END LOOP;
    RETURN v_created;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.fn_ensure_price_history_partitions(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.fn_ensure_price_history_partitions(date, integer)
    TO smartbuy_pipeline, smartbuy_ops;

-- Current month minus 2 .. plus 3 (UTC).
SELECT public.fn_ensure_price_history_partitions(
    ((now() AT TIME ZONE 'UTC')::date - interval '2 months')::date, 6);

-- Append-only by privilege too: nobody but the owner gets UPDATE or DELETE.
GRANT SELECT, INSERT ON public.price_history TO smartbuy_pipeline;
GRANT SELECT ON public.price_history TO smartbuy_analyst, smartbuy_ops, authenticated;
