-- 0016: alert_events.offer_id becomes a soft reference (no foreign key), as price_history.offer_id
-- (0004) and offer_checks.offer_id (0015) are.
--
-- Each new event's foreign-key check locked its offer's row (SELECT ... FOR KEY SHARE), and a row
-- lock writes the tuple header: one dirtied, WAL-logged offers page per event, a full-page image
-- after each checkpoint. In the first evaluation after a bulk import of 1M alerts (87k events at
-- once) that was ~1.5 s and 127 MB of WAL of a ~13 s evaluation (docs/alerts.md). The event is an
-- outbox snapshot: its payload carries what it says about the offer (shop, price, link) and
-- dispatch never reads `offers` through it. Offers are deactivated, never deleted by the
-- platform; a manual delete leaves the gone offer's id on its past events, as on its price
-- history (an offer-level alert still goes with its offer, and its events with it: alerts'
-- own foreign keys cascade).
--
-- The household and alert references keep their foreign keys: deleting a household must take
-- every event of it along (its digests have no alert).

SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

-- squawk-ignore ban-drop-constraint
ALTER TABLE public.alert_events DROP CONSTRAINT alert_events_offer_id_fkey;
COMMENT ON COLUMN public.alert_events.offer_id IS
    'The offer the event is about (soft reference, no foreign key: 0016); its payload keeps the offer''s fields.';
