-- 0011: set-based alert evaluation (smartbuy_pipeline.db.alerts; docs/alerts.md).
--
-- - public.fn_alert_params_valid(alert_type, params): the params rules, enforced by the CHECK
--   alerts_params_valid so an invalid alert cannot be stored (same rules as
--   smartbuy_pipeline.domain.alerts.parse_alert_params; the tests run both on one table).
-- - Evaluator state on alerts (matched, episode, notified_episode, last_notified_offer_id,
--   state_changed_at): written by the pipeline only, never by app users.
-- - public.alert_evaluations: one row per evaluation run (counts), written in the same
--   transaction as the events it created.

-- Fail fast instead of queueing behind live traffic (the runner wraps each file in a transaction).
SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

-- Params by type (optional fields may be absent or JSON null; no other keys are allowed):
--   TARGET_PRICE, TOTAL_PRICE  {"target": money}           money: a JSON number or a decimal
--                                                           string ("149.90"), > 0, < 10^10,
--                                                           at most 2 decimal places
--   PERCENT_DROP  {"percent": number, "reference": "created" | "median_30d"}
--                                                           0 < percent < 100, at most 2 decimals
--   NEW_LOW       {"days": integer 1..3650 (null/absent = all time),
--                  "min_history_days": integer 0..3650 (null/absent = 7)}
--   BACK_IN_STOCK {}
-- Not inlined (it has SET search_path), so CASE order is evaluation order: a cast only runs on
-- a value whose JSON type or pattern was checked first.
CREATE FUNCTION public.fn_alert_params_valid(p_alert_type text, p_params jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = ''
    AS $fn$
        SELECT COALESCE(CASE
            WHEN p_params IS NULL OR pg_catalog.jsonb_typeof(p_params) <> 'object' THEN false
            WHEN p_alert_type IN ('TARGET_PRICE', 'TOTAL_PRICE') THEN
                (p_params - 'target') = '{}'::jsonb
                AND CASE pg_catalog.jsonb_typeof(p_params -> 'target')
                    WHEN 'number' THEN
                        (p_params -> 'target')::numeric > 0
                        AND (p_params -> 'target')::numeric < 10000000000
                        AND (p_params -> 'target')::numeric
                            = pg_catalog.round((p_params -> 'target')::numeric, 2)
                    WHEN 'string' THEN
                        (p_params ->> 'target') ~ '^[0-9]{1,10}(\.[0-9]{1,2})?$'
                        AND (p_params ->> 'target')::numeric > 0
                    ELSE false
                END
            WHEN p_alert_type = 'PERCENT_DROP' THEN
                (p_params - ARRAY['percent', 'reference']) = '{}'::jsonb
                AND CASE pg_catalog.jsonb_typeof(p_params -> 'percent')
                    WHEN 'number' THEN
                        (p_params -> 'percent')::numeric > 0
                        AND (p_params -> 'percent')::numeric < 100
                        AND (p_params -> 'percent')::numeric
                            = pg_catalog.round((p_params -> 'percent')::numeric, 2)
                    ELSE false
                END
                AND COALESCE(pg_catalog.jsonb_typeof(p_params -> 'reference'), 'null') IN ('null', 'string')
                AND COALESCE(p_params ->> 'reference', 'created') IN ('created', 'median_30d')
            WHEN p_alert_type = 'NEW_LOW' THEN
                (p_params - ARRAY['days', 'min_history_days']) = '{}'::jsonb
                AND CASE COALESCE(pg_catalog.jsonb_typeof(p_params -> 'days'), 'null')
                    WHEN 'null' THEN true
                    WHEN 'number' THEN
                        (p_params -> 'days')::numeric = pg_catalog.trunc((p_params -> 'days')::numeric)
                        AND (p_params -> 'days')::numeric BETWEEN 1 AND 3650
                    ELSE false
                END
                AND CASE COALESCE(pg_catalog.jsonb_typeof(p_params -> 'min_history_days'), 'null')
                    WHEN 'null' THEN true
                    WHEN 'number' THEN
                        (p_params -> 'min_history_days')::numeric
                            = pg_catalog.trunc((p_params -> 'min_history_days')::numeric)
                        AND (p_params -> 'min_history_days')::numeric BETWEEN 0 AND 3650
                    ELSE false
                END
            WHEN p_alert_type = 'BACK_IN_STOCK' THEN p_params = '{}'::jsonb
            ELSE false
        END, false)
    $fn$;
REVOKE EXECUTE ON FUNCTION public.fn_alert_params_valid(text, jsonb) FROM PUBLIC;
-- A CHECK runs its function with the inserting user's rights: everyone who writes alerts needs it.
GRANT EXECUTE ON FUNCTION public.fn_alert_params_valid(text, jsonb)
    TO smartbuy_pipeline, smartbuy_ops, smartbuy_analyst, authenticated;

-- alerts is small next to offers and price_history, and every row is checked here at once:
-- NOT VALID + VALIDATE would only split one short scan in two within the same transaction.
ALTER TABLE public.alerts
    -- squawk-ignore constraint-missing-not-valid
    ADD CONSTRAINT alerts_params_valid CHECK (public.fn_alert_params_valid(alert_type, params));

-- Evaluator state (see docs/alerts.md, "Re-arm"). Constant defaults: no table rewrite.
ALTER TABLE public.alerts
    ADD COLUMN matched boolean NOT NULL DEFAULT false,          -- a best match existed at the last evaluation
    ADD COLUMN episode integer NOT NULL DEFAULT 0               -- +1 on every false -> true flip
        CONSTRAINT alerts_episode_non_negative CHECK (episode >= 0),
    ADD COLUMN notified_episode integer,                        -- the episode last notified (or deduplicated)
    ADD COLUMN last_notified_offer_id bigint,
    ADD COLUMN state_changed_at timestamptz;                    -- `now` of the last evaluation that wrote this row

-- The evaluator's writes (a first evaluation updates every alert that matches, ~9 % of them in the
-- benchmark) touch none of the indexed columns of alerts, so they are HOT updates when the row's
-- page has room: leave 20 % of each page free. Applies to pages written from now on (inserts,
-- VACUUM FULL); no rewrite here.
ALTER TABLE public.alerts SET (fillfactor = 80);

-- The pipeline owns the evaluator columns; app users never get UPDATE on them (0006 grants
-- authenticated UPDATE on the user-editable columns only).
GRANT UPDATE (matched, episode, notified_episode, last_notified_offer_id, state_changed_at)
    ON public.alerts TO smartbuy_pipeline;

-- One row per evaluation run. Not household data: counts only, no RLS.
CREATE TABLE public.alert_evaluations (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    partition_key    text NOT NULL,
    mode             text NOT NULL,
    run_id           text,
    changed_since    timestamptz,                 -- triggered mode: offers changed since
    evaluated_at     timestamptz NOT NULL,        -- the evaluation's `now` (rules, cooldowns)
    started_at       timestamptz NOT NULL,        -- wall clock
    finished_at      timestamptz NOT NULL,
    alerts_evaluated integer NOT NULL,
    matched          integer NOT NULL,
    events_created   integer NOT NULL,
    counts           jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT alert_evaluations_mode_valid CHECK (
        (mode = 'full' AND changed_since IS NULL) OR (mode = 'triggered' AND changed_since IS NOT NULL)
    ),
    CONSTRAINT alert_evaluations_counts_object CHECK (jsonb_typeof(counts) = 'object'),
    CONSTRAINT alert_evaluations_finished_after_start CHECK (finished_at >= started_at),
    CONSTRAINT alert_evaluations_counts_non_negative CHECK (
        alerts_evaluated >= 0 AND matched >= 0 AND events_created >= 0
    )
);
-- "the evaluations of partition P", latest first
CREATE INDEX alert_evaluations_partition_idx ON public.alert_evaluations (partition_key, id);

GRANT SELECT, INSERT ON public.alert_evaluations TO smartbuy_pipeline;
GRANT SELECT ON public.alert_evaluations TO smartbuy_ops, smartbuy_analyst;
