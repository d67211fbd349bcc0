-- 0009: progress checkpoints of the hourly price-tracking runs.
--
-- One row per (partition, shard). Each committed batch moves `last_offer_id` forward in the
-- same transaction as its observations, so a crashed run resumes after the last committed
-- batch and a re-run of a finished partition does nothing twice.

SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

CREATE TABLE public.price_tracking_progress (
    partition_key  text NOT NULL,           -- the hourly window, e.g. '2026-11-26-10:00'
    shard          integer NOT NULL,
    shard_count    integer NOT NULL,
    phase          text NOT NULL DEFAULT 'priority',  -- 'priority' (alert/wish offers) then 'rest'
    last_offer_id  bigint NOT NULL DEFAULT 0,
    batches        integer NOT NULL DEFAULT 0,
    offers_done    integer NOT NULL DEFAULT 0,
    counts         jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    PRIMARY KEY (partition_key, shard),
    CONSTRAINT price_tracking_progress_shard_range CHECK (shard >= 0 AND shard < shard_count),
    CONSTRAINT price_tracking_progress_phase_valid CHECK (phase IN ('priority', 'rest', 'done'))
);

GRANT SELECT, INSERT, UPDATE ON public.price_tracking_progress TO smartbuy_pipeline, smartbuy_ops;
GRANT SELECT ON public.price_tracking_progress TO smartbuy_analyst;

CREATE TRIGGER price_tracking_progress_set_updated_at BEFORE UPDATE ON public.price_tracking_progress
    FOR EACH ROW EXECUTE FUNCTION public.fn_set_updated_at();
