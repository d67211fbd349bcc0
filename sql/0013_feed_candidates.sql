-- 0013: the household feed: public.fn_get_feed_candidates(p_household_id), the catalog's
-- full-text search (accent- and case-folded Portuguese, GIN expression index) it matches wishes
-- with, and public.fn_incomplete_signups() for the onboarding health check.
--
-- Matching (docs/schema.md, "Feed"):
--   * a wish with product_id matches that product only (match_kind 'product', match_rank 1);
--   * otherwise its title is matched to products.name + brand by full-text search (match_kind
--     'title'): both sides are folded (accents, case, punctuation) and stemmed with the built-in
--     'portuguese' configuration (stopwords dropped). match_rank is the share of the wish's
--     search terms found in the product; a product is a candidate when match_rank >= 0.6 (one- and
--     two-term titles need every term, three- and four-term titles may miss one). Whole terms
--     only: a wish "Mouse" does not match "Mousepad" (no substring matching).
--   * per wish at most 5 products (best match_rank first, then lower price, then ts_rank), among
--     products that still have an eligible offer after the hard filters.
-- Best offer per product: the lowest price among eligible offers (ties: freight, unknown freight
-- last, then higher risk score, then offer id). Eligible = offer and shop active, price known, in
-- stock or availability unknown, offer currency = wish currency, shop not in the household's
-- blocked_shop_ids and in allowed_shop_ids when that list is not empty, price <= wish.max_price
-- when set, price <= budget_per_mission when set (the budget is in the household's currency: an
-- offer in another currency cannot be shown to respect it and is excluded), and a current risk
-- score in bucket A or B: bucket C and unscored offers are excluded (the feed shows safe offers).
--
-- Security: SECURITY INVOKER, so the caller's own privileges and row-level security apply to
-- every read (a second wall behind the explicit check). Before reading anything the function
-- refuses (insufficient_privilege) an app user (auth.uid()) who is not a member of the household.
-- Members of smartbuy_pipeline or smartbuy_ops (and superusers) may read any household's feed:
-- the pipeline's feed canary and ops diagnosing "feed down"; their RLS policies already let them
-- read all wishes and household profiles. EXECUTE: authenticated, smartbuy_pipeline,
-- smartbuy_ops only (not anon, not analysts).

-- Fail fast instead of queueing behind live traffic (the runner wraps each file in a transaction).
SET LOCAL lock_timeout = '10s';
SET LOCAL statement_timeout = '5min';

-- -- search helpers (IMMUTABLE: usable in the index expression) -------------------------------

-- Fold text for search: Portuguese (and common Latin) accents removed, lower case, every run of
-- characters other than a-z and 0-9 becomes one space. unaccent is contrib (absent on the
-- embedded server), so translate() does the folding; upper-case accented letters are listed
-- because lower() under the C locale only folds ASCII.
CREATE FUNCTION public.fn_search_fold(p_text text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = ''
    AS $fn$
        SELECT pg_catalog.btrim(pg_catalog.regexp_replace(
            pg_catalog.lower(pg_catalog.translate(
                p_text,
                'ÁÀÂÃÄÅáàâãäåÉÈÊËéèêëÍÌÎÏíìîïÓÒÔÕÖóòôõöÚÙÛÜúùûüÇçÑñÝýÿ',
                'AAAAAAaaaaaaEEEEeeeeIIIIiiiiOOOOOoooooUUUUuuuuCcNnYyy'
            )),
            '[^a-z0-9]+', ' ', 'g'
        ))
    $fn$;

-- The searchable document of a product: folded name and brand, Portuguese stems. The GIN index
-- below is on exactly this expression; queries must use it verbatim to be index-backed.
CREATE FUNCTION public.fn_product_search_vector(p_name text, p_brand text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = ''
    AS $fn$
        SELECT pg_catalog.to_tsvector(
            'pg_catalog.portuguese'::pg_catalog.regconfig,
            public.fn_search_fold(pg_catalog.concat_ws(' ', p_name, p_brand))
        )
    $fn$;

-- The search terms of a wish title: distinct Portuguese stems of the folded title, stopwords
-- dropped (empty when the title has none).
CREATE FUNCTION public.fn_search_terms(p_text text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = ''
    AS $fn$
        SELECT pg_catalog.tsvector_to_array(pg_catalog.to_tsvector(
            'pg_catalog.portuguese'::pg_catalog.regconfig, public.fn_search_fold(p_text)))
    $fn$;

-- Any of a title's search terms (OR), for the index probe; match_rank then keeps good matches
-- only. The terms are stems of folded text (only a-z and 0-9), so joined with '|' they are a
-- valid tsquery as they stand (no second normalisation). NULL when the title has no terms.
CREATE FUNCTION public.fn_search_any_query(p_text text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = ''
    AS $fn$
        SELECT NULLIF(pg_catalog.array_to_string(public.fn_search_terms(p_text), ' | '), '')
               ::pg_catalog.tsquery
    $fn$;

REVOKE EXECUTE ON FUNCTION public.fn_search_fold(text), public.fn_product_search_vector(text, text),
    public.fn_search_terms(text), public.fn_search_any_query(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.fn_search_fold(text), public.fn_product_search_vector(text, text),
    public.fn_search_terms(text), public.fn_search_any_query(text)
    TO authenticated, smartbuy_pipeline, smartbuy_ops, smartbuy_analyst;

-- Full-text search over the catalog. The runner applies each file in a transaction, so no
-- CONCURRENTLY; lock_timeout above bounds the wait for the lock.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX products_search_idx ON public.products USING gin (public.fn_product_search_vector(name, brand));

-- -- the feed ----------------------------------------------------------------------------------

CREATE FUNCTION public.fn_get_feed_candidates(p_household_id uuid)
    RETURNS TABLE (
        wish_id          bigint,
        wish_title       text,
        wish_urgency     text,
        match_kind       text,     -- 'product' (wish.product_id) or 'title' (full-text match)
        match_rank       real,     -- 1 for 'product'; share of the title's terms found (>= 0.6)
        product_id       bigint,
        product_name     text,
        product_brand    text,
        gtin             text,
        offer_id         bigint,
        shop_id          bigint,
        shop_name        text,
        price            numeric,
        currency         text,
        freight          numeric,
        availability     text,
        risk_score       integer,
        risk_bucket      text,
        risk_reasons     jsonb,
        eligible_offers  integer   -- eligible offers of the product (the best one is shown)
    )
    LANGUAGE plpgsql STABLE
    SET search_path = ''
    ROWS 20
    AS $fn$
BEGIN
    IF p_household_id IS NULL THEN
        RAISE EXCEPTION 'fn_get_feed_candidates: p_household_id is required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Membership first, before any household row is read. The pipeline and ops roles may read any
    -- household (the feed canary, incident diagnosis); everyone else must be a member.
    IF NOT (pg_catalog.pg_has_role(CURRENT_USER, 'smartbuy_pipeline', 'MEMBER')
            OR pg_catalog.pg_has_role(CURRENT_USER, 'smartbuy_ops', 'MEMBER')) THEN
        IF auth.uid() IS NULL OR NOT public.fn_is_household_member(p_household_id) THEN
            RAISE EXCEPTION 'not a member of household %', p_household_id
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'a user can only read the feed of a household they belong to';
        END IF;
    END IF;

    RETURN QUERY
    WITH settings AS (
        SELECT COALESCE(hp.blocked_shop_ids, '{}') AS blocked_shop_ids,
               COALESCE(hp.allowed_shop_ids, '{}') AS allowed_shop_ids,
               hp.budget_per_mission,
               hp.currency AS budget_currency
        FROM (SELECT 1) AS one
        LEFT JOIN public.household_profiles hp ON hp.household_id = p_household_id
    ),
    active_wishes AS (
        SELECT w.id, w.title, w.urgency, w.currency, w.max_price, w.product_id, w.created_at,
               public.fn_search_terms(w.title) AS terms
        FROM public.wishes w
        WHERE w.household_id = p_household_id
          AND w.active
    ),
    matches AS (
        -- a wish tied to a product
        SELECT w.id AS wish_id, w.product_id, 'product'::text AS match_kind,
               1::real AS match_rank, 1::real AS text_rank
        FROM active_wishes w
        WHERE w.product_id IS NOT NULL
        UNION ALL
        -- a wish by title: GIN probe on any term, then keep products holding >= 60% of them
        SELECT w.id, m.id, 'title', m.match_rank, m.text_rank
        FROM active_wishes w
        CROSS JOIN LATERAL (
            SELECT p.id,
                   ((SELECT pg_catalog.count(*) FROM pg_catalog.unnest(w.terms) AS t(term)
                     WHERE t.term = ANY (pg_catalog.tsvector_to_array(
                         public.fn_product_search_vector(p.name, p.brand))))::real
                    / pg_catalog.cardinality(w.terms))::real AS match_rank,
                   pg_catalog.ts_rank(public.fn_product_search_vector(p.name, p.brand),
                                      public.fn_search_any_query(w.title)) AS text_rank
            FROM public.products p
            WHERE public.fn_product_search_vector(p.name, p.brand) @@ public.fn_search_any_query(w.title)
        ) AS m
        WHERE w.product_id IS NULL
          AND pg_catalog.cardinality(w.terms) > 0
          AND m.match_rank >= 0.6::real
    ),
    eligible AS (
        SELECT m.wish_id, m.match_kind, m.match_rank, m.text_rank,
               o.product_id, o.id AS offer_id, o.shop_id, s.name AS shop_name,
               o.price, o.currency, o.freight, o.availability,
               r.score, r.bucket, r.reasons
        FROM matches m
        JOIN active_wishes w ON w.id = m.wish_id
        CROSS JOIN settings st
        JOIN public.offers o ON o.product_id = m.product_id
        JOIN public.shops s ON s.id = o.shop_id
        JOIN public.offer_risk_scores r ON r.offer_id = o.id
        WHERE o.active
          AND s.active
          AND o.price IS NOT NULL
          AND o.availability IN ('in_stock', 'unknown')
          AND o.currency = w.currency
          AND NOT (o.shop_id = ANY (st.blocked_shop_ids))
          AND (pg_catalog.cardinality(st.allowed_shop_ids) = 0 OR o.shop_id = ANY (st.allowed_shop_ids))
          AND (w.max_price IS NULL OR o.price <= w.max_price)
          AND (st.budget_per_mission IS NULL
               OR (o.currency = st.budget_currency AND o.price <= st.budget_per_mission))
          AND r.bucket IN ('A', 'B')
    ),
    best AS (
        SELECT DISTINCT ON (e.wish_id, e.product_id)
               e.*,
               pg_catalog.count(*) OVER (PARTITION BY e.wish_id, e.product_id) AS n_eligible
        FROM eligible e
        ORDER BY e.wish_id, e.product_id, e.price, e.freight NULLS LAST, e.score DESC, e.offer_id
    ),
    ranked AS (
        SELECT b.*,
               pg_catalog.row_number() OVER (
                   PARTITION BY b.wish_id
                   ORDER BY b.match_rank DESC, b.price, b.text_rank DESC, b.product_id
               ) AS pos
        FROM best b
    )
    SELECT w.id, w.title, w.urgency, rk.match_kind, rk.match_rank::real,
           p.id, p.name, p.brand, p.gtin::text,
           rk.offer_id, rk.shop_id, rk.shop_name,
           rk.price::numeric, rk.currency::text, rk.freight::numeric, rk.availability,
           rk.score::integer, rk.bucket::text, rk.reasons, rk.n_eligible::integer
    FROM ranked rk
    JOIN active_wishes w ON w.id = rk.wish_id
    JOIN public.products p ON p.id = rk.product_id
    WHERE rk.pos <= 5
    ORDER BY CASE w.urgency WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
             w.created_at DESC, w.id, rk.pos;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.fn_get_feed_candidates(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.fn_get_feed_candidates(uuid) TO authenticated, smartbuy_pipeline, smartbuy_ops;

-- -- onboarding health -------------------------------------------------------------------------

-- Auth users the signup trigger did not complete: no profile, or no household membership (a
-- membership always points at an existing household). Reads auth.users, which the pipeline and
-- ops roles have no grant on, hence SECURITY DEFINER; it returns only the incomplete users'
-- id, e-mail and signup time, at most p_limit of them, each row carrying the total count.
CREATE FUNCTION public.fn_incomplete_signups(p_limit integer)
    RETURNS TABLE (
        user_id          uuid,
        email            text,
        signed_up_at     timestamptz,
        missing          text[],   -- of 'profile', 'membership'
        incomplete_total bigint
    )
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $fn$
        SELECT u.id, u.email, u.created_at,
               pg_catalog.array_remove(ARRAY[
                   CASE WHEN pr.id IS NULL THEN 'profile' END,
                   CASE WHEN NOT EXISTS (SELECT 1 FROM public.household_members m WHERE m.user_id = u.id)
                        THEN 'membership' END
               ], NULL),
               pg_catalog.count(*) OVER ()
        FROM auth.users u
        LEFT JOIN public.profiles pr ON pr.id = u.id
        WHERE pr.id IS NULL
           OR NOT EXISTS (SELECT 1 FROM public.household_members m WHERE m.user_id = u.id)
        ORDER BY u.created_at DESC NULLS LAST, u.id
        LIMIT GREATEST(p_limit, 0)
    $fn$;
REVOKE EXECUTE ON FUNCTION public.fn_incomplete_signups(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.fn_incomplete_signups(integer) TO smartbuy_pipeline, smartbuy_ops;
