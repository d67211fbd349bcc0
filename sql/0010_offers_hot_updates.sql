-- 0010: make the hourly offer-state update cheap.
--
-- Every tracked offer's row is updated once an hour (price, availability, last_checked_at, ...).
-- With an index on last_checked_at each update rewrote every index of `offers` (non-HOT update);
-- without it, and with room left on each page, PostgreSQL updates the row in place (HOT) and
-- touches no index. The due-offers query walks offers by primary key within a shard (keyset on
-- id) and filters on last_checked_at, so it never used that index.

SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

-- The runner applies each file in a transaction, so no CONCURRENTLY: dropping an index is
-- instant, and lock_timeout above bounds the wait for the lock.
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX public.offers_due_idx;
ALTER TABLE public.offers SET (fillfactor = 70);
