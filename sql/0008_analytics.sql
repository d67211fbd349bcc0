-- 0008: the analysts' tables in schema analytics, maintained set-based by the pipeline
-- (smartbuy_pipeline.db.analytics). See docs/analytics.md for definitions and example queries.
--
-- analytics.price_history   VIEW  accepted observations with product/shop (index-backed per offer)
-- analytics.price_changes   TABLE only the observations where price, reference price, availability
--                                 or currency differ from the offer's previous accepted observation
-- analytics.price_daily     TABLE one row per offer and UTC day: OHLC, observations, in-stock share
-- analytics.offer_price_stats TABLE one row per active offer: current price, lows, medians, market

-- Fail fast instead of queueing behind live traffic (the runner wraps each file in a transaction).
SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

-- security_invoker: the reader's own privileges on public.price_history / public.offers apply
-- (analyst, ops and pipeline all have SELECT on both); the view grants nothing extra.
-- One join by primary key: "where offer_id = X" stays an index scan of each partition's PK.
CREATE VIEW analytics.price_history WITH (security_invoker = true) AS
SELECT h.offer_id,
       o.product_id,
       o.shop_id,
       h.observed_at,
       h.price,
       h.currency,
       h.reference_price,
       h.freight,
       h.availability
FROM public.price_history h
JOIN public.offers o ON o.id = h.offer_id
WHERE h.status = 'accepted';

CREATE TABLE analytics.price_changes (
    offer_id                 bigint NOT NULL,
    changed_at               timestamptz NOT NULL,  -- observed_at of the observation that changed
    price                    numeric(12, 2),        -- NULL: out of stock with no price shown
    previous_price           numeric(12, 2),
    currency                 char(3) NOT NULL,
    reference_price          numeric(12, 2),
    previous_reference_price numeric(12, 2),
    availability             text NOT NULL,
    previous_availability    text,                  -- NULL only on the offer's first observation
    PRIMARY KEY (offer_id, changed_at),
    CONSTRAINT price_changes_currency_format CHECK (currency ~ '^[A-Z]{3}$')
);

CREATE TABLE analytics.price_daily (
    offer_id       bigint NOT NULL,
    day            date NOT NULL,            -- UTC calendar day, like the price_history partitions
    product_id     bigint NOT NULL,
    shop_id        bigint NOT NULL,
    currency       char(3) NOT NULL,         -- of the day's last observation; OHLC uses only it
    open           numeric(12, 2),           -- NULL when no priced observation that day
    close          numeric(12, 2),
    min            numeric(12, 2),
    max            numeric(12, 2),
    observations   integer NOT NULL,
    in_stock_share numeric(5, 4) NOT NULL,   -- time-weighted, see docs/analytics.md
    PRIMARY KEY (offer_id, day),
    CONSTRAINT price_daily_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT price_daily_observations_positive CHECK (observations > 0),
    CONSTRAINT price_daily_in_stock_share_range CHECK (in_stock_share BETWEEN 0 AND 1),
    CONSTRAINT price_daily_ohlc_order CHECK (min <= open AND min <= close AND max >= open AND max >= close)
);
-- "Daily OHLC for product P across shops" (and a day range of it).
CREATE INDEX price_daily_product_day_idx ON analytics.price_daily (product_id, day);

CREATE TABLE analytics.offer_price_stats (
    offer_id          bigint PRIMARY KEY,
    product_id        bigint NOT NULL,
    shop_id           bigint NOT NULL,
    currency          char(3) NOT NULL,
    current_price     numeric(12, 2),   -- NULL: the latest observation shows no price (out of stock)
    low_30d           numeric(12, 2),
    median_30d        numeric(12, 2),
    low_90d           numeric(12, 2),
    median_90d        numeric(12, 2),
    low_all_time      numeric(12, 2),
    median_all_time   numeric(12, 2),
    typical_low       numeric(12, 2),   -- p10 of the 90-day observed prices
    typical_high      numeric(12, 2),   -- p90 of the 90-day observed prices
    market_median     numeric(12, 2),   -- median current price of the product at OTHER shops
    market_shops      integer NOT NULL DEFAULT 0,
    observations_90d  integer NOT NULL DEFAULT 0,
    first_observed_at timestamptz NOT NULL,
    last_observed_at  timestamptz NOT NULL,
    refreshed_at      timestamptz NOT NULL,
    CONSTRAINT offer_price_stats_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT offer_price_stats_typical_order CHECK (typical_low <= typical_high)
);
CREATE INDEX offer_price_stats_product_idx ON analytics.offer_price_stats (product_id);

-- 0001's default privileges already give these; explicit so the migration says what it means.
GRANT SELECT ON analytics.price_history, analytics.price_changes, analytics.price_daily,
    analytics.offer_price_stats TO smartbuy_analyst, smartbuy_ops;
GRANT SELECT ON analytics.price_history TO smartbuy_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON analytics.price_changes, analytics.price_daily,
    analytics.offer_price_stats TO smartbuy_pipeline;
-- The default privileges also gave the pipeline TRUNCATE and write rights on the view; it needs neither.
REVOKE TRUNCATE ON analytics.price_changes, analytics.price_daily, analytics.offer_price_stats
    FROM smartbuy_pipeline;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON analytics.price_history FROM smartbuy_pipeline;
