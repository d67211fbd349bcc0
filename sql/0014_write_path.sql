-- 0014: make the hourly offer-state update cheaper (trigger WHEN clause, fillfactor 45).
--
-- offers_set_updated_at ran a PL/pgSQL function for every row of every UPDATE, ~7 us per row,
-- ~1000 rows per tracking batch. With a WHEN clause (evaluated in C, no function call) it only
-- runs when the statement did not already set updated_at to now(); the tracking write path sets
-- it itself. For every other writer nothing changes: after any UPDATE, updated_at = now(), even
-- when the statement wrote another value.

SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

CREATE OR REPLACE TRIGGER offers_set_updated_at BEFORE UPDATE ON public.offers
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM pg_catalog.now())
    EXECUTE FUNCTION public.fn_set_updated_at();

-- A tracking batch updates up to every row of a page in ONE transaction, and the old versions
-- cannot be pruned before it commits: the page needs room for a second copy of its rows, or the
-- updates stop being HOT (they then write every index of offers and bloat the table; at 70 about
-- half the batch's updates were HOT in bench/bench_price_tracking.py write). The table is ~1.5x
-- larger. Only new pages get it: rewrite the table (VACUUM FULL / pg_repack) in a maintenance
-- window to apply it to existing pages.
ALTER TABLE public.offers SET (fillfactor = 45);
