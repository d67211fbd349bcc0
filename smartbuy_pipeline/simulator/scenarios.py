"""Deterministic, scripted marketplace scenarios for the simulator, tests and benchmarks.

Nothing here is random at run time: every per-offer variation (the shop's price offset, the Pix
discount, the instalment count, the freight, the flapping period, ...) is derived from a CRC32 of
the offer key when the catalog is built, and `price_state(offer, at)` is a pure function of the
offer and the hour containing `at`. The same (offer, hour) always yields the same `PriceState`,
in every process.

Prices
------
Each offer has a `base_price` (its regular price, paid in full by card). A trajectory moves that
figure over time; from the moved figure (the *card price*) the page-level variants derive:

* cash / Pix price  = card price x (1 - cash_discount_pct / 100), rounded to cents (half up);
  this is the figure published machine-readably (JSON-LD / OpenGraph / microdata / feed / API)
  and is `PriceState.price`;
* one instalment    = card price / installments (10 or 12 "sem juros"), rounded to cents;
* reference ("de")  = the struck list price, only when the trajectory shows one.

Shops whose source is a merchant feed or a marketplace API have no Pix discount
(cash_discount_pct = 0): for them cash price = card price.

Time is stepped by the hour (UTC): a state begins at a whole hour and `PriceState.since` is the
hour at which the current state began (used for HTTP Last-Modified).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Callable, Iterator, Sequence

from smartbuy_pipeline.domain.gtin import make_gtin13
from smartbuy_pipeline.domain.types import CENT, Availability

__all__ = [
    "BLACK_FRIDAY_2026",
    "SIM_EPOCH",
    "TrajectoryKind",
    "FaultKind",
    "Fault",
    "SimShop",
    "SimProduct",
    "SimOffer",
    "PriceState",
    "Scenario",
    "price_state",
    "demo_scenario",
    "scale_scenario",
    "seed_of",
    "hour_floor",
    "format_brl",
]

#: Black Friday 2026 is Friday 27 Nov 2026; the sale starts at 00:00 in Brasília (UTC-3).
BLACK_FRIDAY_2026 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
#: Start of simulated history: STEADY offers have been at their price since then.
SIM_EPOCH = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)

MIN_PRICE = Decimal("99.90")
MAX_PRICE = Decimal("8999.00")

# Trajectory constants (documented figures; the unit tests pin them).
DRIFT_AMPLITUDE = Decimal("0.08")  # +-8 % around base_price ...
DRIFT_PERIOD_DAYS = 56  # ... over an 8-week triangle wave: 4 % a week, one step a day
GENUINE_DROP_FACTOR = Decimal("0.75")  # a lasting 25 % cut
GENUINE_DROP_REFERENCE_DAYS = 30  # honest "de" (the pre-drop price) shown for 30 days after
BF_RAISE_DAYS = 35  # the price is raised 5 weeks before Black Friday ...
BF_RAISE_FACTOR = Decimal("1.25")  # ... by 25 % ...
BF_SALE_DAYS = 4  # ... then "discounted" back to base for Black Friday through Cyber Monday ...
BF_REFERENCE_FACTOR = Decimal("1.50")  # ... with a "de" price of 150 % of base (never charged)
SCAM_FACTOR = Decimal("0.40")  # a scam lists at 40 % of the market price, "de" = market price


class TrajectoryKind(StrEnum):
    STEADY = "steady"
    DRIFT = "drift"
    GENUINE_DROP = "genuine_drop"
    BLACK_FRIDAY_FAKE = "black_friday_fake"
    SCAM = "scam"
    FLAPPING = "flapping"


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    SERVER_ERROR_BURST = "server_error_burst"  # 503 (or `status`) then OK
    SLOW = "slow"  # delay `delay_ms` before answering
    TRUNCATED = "truncated"  # body cut mid-way (in the JSON-LD when there is one)
    MALFORMED = "malformed"  # invalid JSON-LD / JSON / XML
    BOT_WALL = "bot_wall"  # a captcha page instead of the product


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected into responses of one shop or one offer.

    Which requests it hits (counted per fault, from when it was installed):
    * `count` set, `period` unset: the first `count` requests;
    * `count` and `period` set: the first `count` of every `period` requests ("occasional burst");
    * `duration_s` set: every request within `duration_s` real seconds after installation;
    * none of them: every request.
    `start_after` lets that many requests through before the counting above starts.
    """

    kind: FaultKind
    count: int | None = None
    period: int | None = None
    duration_s: float | None = None
    status: int | None = None  # SERVER_ERROR_BURST: 503 by default; BOT_WALL: 200 by default
    retry_after: int = 1  # RATE_LIMIT: seconds in Retry-After
    delay_ms: int = 0  # SLOW
    abort_connection: bool = False  # TRUNCATED: announce the full length, send half, close
    start_after: int = 0  # requests let through before the fault starts counting

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "count": self.count,
            "period": self.period,
            "duration_s": self.duration_s,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "abort_connection": self.abort_connection,
            "start_after": self.start_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        kw = dict(data)
        kw["kind"] = FaultKind(kw["kind"])
        allowed = set(cls.__dataclass_fields__)
        unknown = set(kw) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class SimShop:
    slug: str
    name: str
    domain: str
    reputation_score: int  # 0-100
    created_days_ago: int
    locale: str = "pt_BR"
    currency: str = "BRL"
    source_kind: str = "page"  # "page" | "merchant_feed" | "marketplace_api"
    page_variant: str = "jsonld"  # "jsonld" | "opengraph" | "microdata" | "mixed"
    max_concurrent_requests: int = 4
    min_interval_ms: int = 250
    faults: tuple[Fault, ...] = ()
    jsonld_style: str = "offer"  # "offer" | "graph" | "aggregate": how the JSON-LD is shaped
    feed_format: str = "rss"  # "rss" | "atom" | "tsv": the feed the catalog points at
    seller_id: int = 0  # marketplace seller id (items API)


@dataclass(frozen=True, slots=True)
class SimProduct:
    key: str
    gtin: str  # EAN-13
    name: str  # pt-BR
    brand: str
    category: str
    base_price: Decimal  # the market price (regular, by card)


@dataclass(frozen=True, slots=True)
class SimOffer:
    key: str
    shop_slug: str
    product_key: str
    trajectory: TrajectoryKind
    external_id: str
    # Everything price_state needs, fixed when the catalog is built (seeded by `key`):
    base_price: Decimal = Decimal("999.00")  # this shop's regular (card) price
    market_price: Decimal = Decimal("999.00")  # the product's market price (SCAM lists vs it)
    cash_discount_pct: int = 5  # Pix discount; 0 for feed / API shops
    installments: int = 10  # "10x sem juros" or 12
    freight: Decimal = Decimal("0.00")
    anchor: datetime | None = None  # GENUINE_DROP instant / Black Friday; None = default
    flap_hours: int = 3  # FLAPPING: hours in stock, then as many out of stock
    phase_hours: int = 0  # DRIFT / FLAPPING phase shift


@dataclass(frozen=True, slots=True)
class PriceState:
    """What an offer shows at one hour. `price` is None only when out of stock."""

    price: Decimal | None  # cash / Pix price: the machine-readable figure
    reference_price: Decimal | None  # struck "de" price, if shown
    freight: Decimal
    availability: Availability
    currency: str = "BRL"
    card_price: Decimal | None = None  # full price by card
    installments: int | None = None  # instalment count ("sem juros")
    installment_amount: Decimal | None = None  # one instalment
    since: datetime = SIM_EPOCH  # the hour this state began (Last-Modified)
    until: datetime | None = None  # when a shown "de" (sale) ends, if scripted

    @property
    def in_stock(self) -> bool:
        return self.availability is Availability.IN_STOCK

    def content_key(self) -> tuple[Any, ...]:
        """Everything a rendered page depends on (not `since`): the basis of the ETag."""
        return (
            self.price,
            self.reference_price,
            self.freight,
            self.availability.value,
            self.currency,
            self.card_price,
            self.installments,
            self.installment_amount,
        )


# ----------------------------------------------------------------------------------------------
# helpers


def seed_of(key: str, salt: str = "") -> int:
    """A stable 32-bit seed for a key (CRC32; Python's hash() is salted per process)."""
    return zlib.crc32(f"{salt}:{key}".encode())


def hour_floor(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("price_state needs a timezone-aware datetime")
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def price_point(x: Decimal) -> Decimal:
    """Snap to a realistic BRL price point: 129,90 below R$ 1.000; 1.899,00 from there up.

    Clamped to R$ 99,90 .. R$ 8.999,00.
    """
    if x < Decimal("999.5"):
        p = Decimal(int(x.to_integral_value(rounding=ROUND_HALF_UP))) - Decimal("0.10")
    else:
        p = (x / 10).to_integral_value(rounding=ROUND_HALF_UP) * 10 - 1
    p = min(max(p, MIN_PRICE), MAX_PRICE)
    return p.quantize(CENT)


def format_brl(amount: Decimal) -> str:
    """pt-BR money text: Decimal('2599') -> 'R$ 2.599,00'."""
    s = f"{amount.quantize(CENT):,.2f}"  # '2,599.00'
    return "R$ " + s.replace(",", "_").replace(".", ",").replace("_", ".")


def _state(
    offer: SimOffer,
    card: Decimal,
    ref: Decimal | None,
    since: datetime,
    until: datetime | None = None,
) -> PriceState:
    card = card.quantize(CENT)
    cash = _cents(card * (100 - offer.cash_discount_pct) / 100)
    return PriceState(
        price=cash,
        reference_price=ref.quantize(CENT) if ref is not None else None,
        freight=offer.freight,
        availability=Availability.IN_STOCK,
        currency="BRL",
        card_price=card,
        installments=offer.installments,
        installment_amount=_cents(card / offer.installments),
        since=since,
        until=until if ref is not None else None,
    )


def _epoch_since(h: datetime) -> datetime:
    return SIM_EPOCH if h >= SIM_EPOCH else h


def genuine_drop_at(offer: SimOffer) -> datetime:
    """The scripted drop instant: `offer.anchor`, else 2026-11-10 plus 0-239 seeded hours."""
    if offer.anchor is not None:
        return hour_floor(offer.anchor)
    return datetime(2026, 11, 10, tzinfo=UTC) + timedelta(hours=seed_of(offer.key, "drop") % 240)


def black_friday_of(offer: SimOffer) -> datetime:
    return hour_floor(offer.anchor) if offer.anchor is not None else BLACK_FRIDAY_2026


def price_state(offer: SimOffer, at: datetime) -> PriceState:
    """The offer's state during the UTC hour containing `at` (a pure function)."""
    h = hour_floor(at)
    kind = offer.trajectory
    base = offer.base_price

    if kind is TrajectoryKind.STEADY:
        return _state(offer, base, None, _epoch_since(h))

    if kind is TrajectoryKind.DRIFT:
        # One step a day at a seeded hour; a triangle wave of +-8 % over 8 weeks.
        hours = int((h - SIM_EPOCH).total_seconds() // 3600) - offer.phase_hours
        day = hours // 24
        pos = day % DRIFT_PERIOD_DAYS
        half = DRIFT_PERIOD_DAYS // 2
        # tri goes -1 .. +1 .. -1 over the period
        tri = Decimal(pos - half // 2) / Decimal(half // 2) if pos < half else Decimal(
            half + half // 2 - pos
        ) / Decimal(half // 2)
        card = price_point(base * (1 + DRIFT_AMPLITUDE * tri))
        since = SIM_EPOCH + timedelta(hours=day * 24 + offer.phase_hours)
        return _state(offer, card, None, since)

    if kind is TrajectoryKind.GENUINE_DROP:
        drop = genuine_drop_at(offer)
        if h < drop:
            return _state(offer, base, None, _epoch_since(h))
        low = price_point(base * GENUINE_DROP_FACTOR)
        ref_until = drop + timedelta(days=GENUINE_DROP_REFERENCE_DAYS)
        if h < ref_until:  # an honest "de": base was charged for the 30+ days before the drop
            return _state(offer, low, base, drop, ref_until)
        return _state(offer, low, None, ref_until)

    if kind is TrajectoryKind.BLACK_FRIDAY_FAKE:
        bf = black_friday_of(offer)
        raise_at = bf - timedelta(days=BF_RAISE_DAYS)
        sale_end = bf + timedelta(days=BF_SALE_DAYS)
        if h < raise_at:
            return _state(offer, base, None, _epoch_since(h))
        if h < bf:
            return _state(offer, price_point(base * BF_RAISE_FACTOR), None, raise_at)
        if h < sale_end:
            return _state(offer, base, price_point(base * BF_REFERENCE_FACTOR), bf, sale_end)
        return _state(offer, base, None, sale_end)

    if kind is TrajectoryKind.SCAM:
        market = offer.market_price
        return _state(offer, price_point(market * SCAM_FACTOR), market, _epoch_since(h))

    if kind is TrajectoryKind.FLAPPING:
        hours = int((h - SIM_EPOCH).total_seconds() // 3600) - offer.phase_hours
        block = hours // offer.flap_hours
        since = SIM_EPOCH + timedelta(hours=block * offer.flap_hours + offer.phase_hours)
        if block % 2 == 0:
            return _state(offer, base, None, since)
        return PriceState(
            price=None,
            reference_price=None,
            freight=offer.freight,
            availability=Availability.OUT_OF_STOCK,
            currency="BRL",
            since=since,
        )

    raise ValueError(f"unknown trajectory {kind!r}")


# ----------------------------------------------------------------------------------------------
# scenario


class Scenario:
    """A catalog: shops, products and offers. Offers may be built lazily (scale scenarios)."""

    def __init__(
        self,
        name: str,
        shops: Sequence[SimShop],
        products: Sequence[SimProduct],
        offers: Sequence[SimOffer] | Callable[[], Sequence[SimOffer]],
        offer_faults: dict[str, tuple[Fault, ...]] | None = None,
        notes: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.shops: tuple[SimShop, ...] = tuple(shops)
        self.products: tuple[SimProduct, ...] = tuple(products)
        self._offers_src = offers
        self._offers: Sequence[SimOffer] | None = None if callable(offers) else offers
        self.offer_faults: dict[str, tuple[Fault, ...]] = dict(offer_faults or {})
        self.notes: dict[str, str] = dict(notes or {})  # offer key -> what it demonstrates
        self.shop_by_slug: dict[str, SimShop] = {s.slug: s for s in self.shops}
        self.product_by_key: dict[str, SimProduct] = {p.key: p for p in self.products}
        self._offer_by_key: dict[str, SimOffer] | None = None
        self._offer_by_external: dict[str, SimOffer] | None = None
        self._offers_by_shop: dict[str, list[SimOffer]] | None = None

    @property
    def offers(self) -> Sequence[SimOffer]:
        if self._offers is None:
            src = self._offers_src
            assert callable(src)
            self._offers = src()
        return self._offers

    @property
    def offer_by_key(self) -> dict[str, SimOffer]:
        if self._offer_by_key is None:
            self._offer_by_key = {o.key: o for o in self.offers}
        return self._offer_by_key

    @property
    def offer_by_external_id(self) -> dict[str, SimOffer]:
        if self._offer_by_external is None:
            self._offer_by_external = {o.external_id: o for o in self.offers}
        return self._offer_by_external

    def offers_of_shop(self, slug: str) -> list[SimOffer]:
        if self._offers_by_shop is None:
            by: dict[str, list[SimOffer]] = {s.slug: [] for s in self.shops}
            for o in self.offers:
                by.setdefault(o.shop_slug, []).append(o)
            self._offers_by_shop = by
        return self._offers_by_shop.get(slug, [])

    def offer(self, key: str) -> SimOffer:
        return self.offer_by_key[key]

    def shop_of(self, offer: SimOffer) -> SimShop:
        return self.shop_by_slug[offer.shop_slug]

    def product_of(self, offer: SimOffer) -> SimProduct:
        return self.product_by_key[offer.product_key]

    def state(self, offer_key: str, at: datetime) -> PriceState:
        return price_state(self.offer_by_key[offer_key], at)

    # -- URLs ----------------------------------------------------------------------------------
    @staticmethod
    def page_url(base_url: str, offer: SimOffer) -> str:
        return f"{base_url.rstrip('/')}/s/{offer.shop_slug}/p/{offer.key}"

    @staticmethod
    def feed_url(base_url: str, shop: SimShop) -> str:
        ext = {"rss": "xml", "atom": "atom", "tsv": "tsv"}[shop.feed_format]
        return f"{base_url.rstrip('/')}/s/{shop.slug}/feed.{ext}"

    @staticmethod
    def api_base_url(base_url: str) -> str:
        return f"{base_url.rstrip('/')}/api"

    def locator(self, base_url: str, offer: SimOffer) -> str:
        kind = self.shop_by_slug[offer.shop_slug].source_kind
        if kind == "page":
            return self.page_url(base_url, offer)
        return offer.external_id  # feed item id / marketplace item id

    # -- rows for the database -----------------------------------------------------------------
    def catalog_rows(
        self, base_url: str, now: datetime | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Plain dicts for `shops`, `products`, `offers` as the database stores them."""
        now = now or datetime.now(UTC)
        shops = []
        for s in self.shops:
            row: dict[str, Any] = {
                "name": s.name,
                "domain": s.domain,
                "reputation_score": s.reputation_score,
                "locale": s.locale,
                "currency": s.currency,
                "source_kind": s.source_kind,
                "max_concurrent_requests": s.max_concurrent_requests,
                "min_interval_ms": s.min_interval_ms,
                "check_interval_seconds": 3600,
                "allow_private_network": True,
                "created_at": now - timedelta(days=s.created_days_ago),
            }
            if s.source_kind == "merchant_feed":
                row["feed_url"] = self.feed_url(base_url, s)
            elif s.source_kind == "marketplace_api":
                row["api_base_url"] = self.api_base_url(base_url)
            shops.append(row)
        products = [
            {"gtin": p.gtin, "name": p.name, "brand": p.brand, "category": p.category}
            for p in self.products
        ]
        offers = []
        for o in self.offers:
            shop = self.shop_by_slug[o.shop_slug]
            offers.append(
                {
                    "shop_domain": shop.domain,
                    "product_gtin": self.product_by_key[o.product_key].gtin,
                    "source_kind": shop.source_kind,
                    "locator": self.locator(base_url, o),
                    "external_id": o.external_id,
                    "offer_key": o.key,
                }
            )
        return {"shops": shops, "products": products, "offers": offers}


# ----------------------------------------------------------------------------------------------
# offer construction


def _derived_offer(
    key: str,
    shop: SimShop,
    product: SimProduct,
    trajectory: TrajectoryKind,
    external_id: str,
    *,
    base_price: Decimal | None = None,
    cash_discount_pct: int | None = None,
    installments: int | None = None,
    freight: Decimal | None = None,
    anchor: datetime | None = None,
    flap_hours: int | None = None,
) -> SimOffer:
    s = seed_of(key)
    if base_price is None:
        # this shop's price: -5 % .. +8 % around the market price, snapped to a price point
        base_price = price_point(product.base_price * (Decimal(950 + s % 131) / 1000))
    if cash_discount_pct is None:
        cash_discount_pct = 0 if shop.source_kind != "page" else (5, 8, 10, 5, 7)[(s >> 8) % 5]
    if installments is None:
        installments = (10, 12)[(s >> 11) % 2]
    if freight is None:
        freight = (
            Decimal("0.00"),
            Decimal("0.00"),
            Decimal("19.90"),
            Decimal("29.90"),
            Decimal("14.99"),
        )[(s >> 13) % 5]
    if flap_hours is None:
        flap_hours = 2 + (s >> 17) % 4  # 2..5 hours
    return SimOffer(
        key=key,
        shop_slug=shop.slug,
        product_key=product.key,
        trajectory=trajectory,
        external_id=external_id,
        base_price=base_price,
        market_price=product.base_price,
        cash_discount_pct=cash_discount_pct,
        installments=installments,
        freight=freight,
        anchor=anchor,
        flap_hours=flap_hours,
        phase_hours=(s >> 20) % 24,
    )


# ----------------------------------------------------------------------------------------------
# demo scenario

_DEMO_SHOPS = (
    SimShop(
        slug="casa-eletro", name="Casa Eletro", domain="casaeletro.example.com.br",
        reputation_score=88, created_days_ago=3650, page_variant="jsonld", jsonld_style="offer",
        max_concurrent_requests=4, min_interval_ms=200,
    ),
    SimShop(
        slug="mega-tech", name="MegaTech", domain="megatech.example.com.br",
        reputation_score=80, created_days_ago=2900, page_variant="jsonld", jsonld_style="graph",
        max_concurrent_requests=2, min_interval_ms=500,
        # an occasional 503 burst: requests 11-12, 36-37, 61-62, ... answer 503
        faults=(
            Fault(FaultKind.SERVER_ERROR_BURST, count=2, period=25, status=503, start_after=10),
        ),
    ),
    SimShop(
        slug="loja-vitoria", name="Loja Vitória", domain="lojavitoria.example.com.br",
        reputation_score=74, created_days_ago=1200, page_variant="opengraph",
        max_concurrent_requests=3, min_interval_ms=300,
    ),
    SimShop(
        slug="ponto-digital", name="Ponto Digital", domain="pontodigital.example.com.br",
        reputation_score=83, created_days_ago=4100, page_variant="microdata",
        max_concurrent_requests=4, min_interval_ms=250,
    ),
    SimShop(
        slug="super-ofertas-br", name="Super Ofertas BR", domain="superofertas-br.example.com",
        reputation_score=15, created_days_ago=10, page_variant="mixed", jsonld_style="aggregate",
        max_concurrent_requests=2, min_interval_ms=1000,
    ),
    SimShop(
        slug="atacado-eletronicos", name="Atacado Eletrônicos",
        domain="atacadoeletronicos.example.com.br", reputation_score=70, created_days_ago=1800,
        source_kind="merchant_feed", page_variant="jsonld", jsonld_style="aggregate",
        feed_format="rss", max_concurrent_requests=1, min_interval_ms=1000,
    ),
    SimShop(
        slug="mercado-sim", name="Mercado Sim", domain="mercadosim.example.com.br",
        reputation_score=90, created_days_ago=5000, source_kind="marketplace_api",
        page_variant="opengraph", max_concurrent_requests=2, min_interval_ms=200,
        seller_id=123456789,
    ),
)

_DEMO_PRODUCTS_SPEC = (
    ("galaxy-a55", "Smartphone Samsung Galaxy A55 5G 256GB", "Samsung", "Celulares", "2199.00"),
    ("iphone-15", "Smartphone Apple iPhone 15 128GB", "Apple", "Celulares", "5999.00"),
    ("moto-g84", "Smartphone Motorola Moto G84 5G 256GB", "Motorola", "Celulares", "1499.00"),
    ("ideapad-3", 'Notebook Lenovo IdeaPad 3 15,6" Ryzen 5 8GB 512GB SSD', "Lenovo",
     "Informática", "3299.00"),
    ("tv-lg-55", 'Smart TV LG 55" 4K UHD ThinQ AI 55UR8750', "LG", "TVs", "2899.00"),
    ("airfryer-walita", "Air Fryer Philips Walita 4,1L RI9252", "Philips Walita",
     "Eletroportáteis", "499.90"),
    ("geladeira-brastemp", "Geladeira Brastemp Frost Free Duplex 375L BRM44HB", "Brastemp",
     "Eletrodomésticos", "3599.00"),
    ("ps5-slim", "Console Sony PlayStation 5 Slim 1TB", "Sony", "Games", "3799.00"),
    ("jbl-tune-520", "Fone de Ouvido JBL Tune 520BT Bluetooth", "JBL", "Áudio", "249.90"),
    ("nespresso-vertuo", "Cafeteira Expresso Nespresso Vertuo Pop", "Nespresso",
     "Eletroportáteis", "599.00"),
    ("microondas-electrolux", "Micro-ondas Electrolux 31L ME41X", "Electrolux",
     "Eletrodomésticos", "799.00"),
    ("robo-xiaomi", "Aspirador Robô Xiaomi Robot Vacuum E10", "Xiaomi", "Casa", "1299.00"),
)

#: The named demo offers (documented in the report and in `Scenario.notes`).
DEMO_BF_FAKE = "bf-fake-tv-lg55-megatech"
DEMO_BF_FAKE_FEED = "bf-fake-galaxy-a55-atacado"
DEMO_SCAM = "scam-iphone15-superofertas"
DEMO_GENUINE_DROP = "drop-ps5-pontodigital"
DEMO_FLAPPING = "flap-airfryer-lojavitoria"
DEMO_GENUINE_DROP_AT = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)


def demo_scenario() -> Scenario:
    """~7 shops, 12 products, 42 offers covering every source kind, page variant and trajectory.

    Named offers:
    * DEMO_BF_FAKE `bf-fake-tv-lg55-megatech` (MegaTech, JSON-LD @graph): LG 55" TV, R$ 2.899,00
      until 2026-10-23 03:00 UTC, raised to R$ 3.619,00 (+25 %) until Black Friday
      2026-11-27 03:00 UTC, then "de R$ 4.349,00 por R$ 2.899,00" (a "-33 %" claim against a price
      never charged) until 2026-12-01 03:00 UTC, then R$ 2.899,00 with no "de".
    * DEMO_SCAM `scam-iphone15-superofertas` (Super Ofertas BR, reputation 15, 10 days old):
      iPhone 15 "de R$ 5.999,00 por R$ 2.399,00" (40 % of market), always.
    * DEMO_GENUINE_DROP `drop-ps5-pontodigital`: PS5 R$ 3.799,00, from 2026-11-20 13:00 UTC
      R$ 2.849,00 for good (honest "de R$ 3.799,00" for 30 days).
    """
    shops = _DEMO_SHOPS
    sh = {s.slug: s for s in shops}
    products = tuple(
        SimProduct(key, make_gtin13("789", 1_000_100 + i), name, brand, cat, Decimal(price))
        for i, (key, name, brand, cat, price) in enumerate(_DEMO_PRODUCTS_SPEC)
    )
    pr = {p.key: p for p in products}
    T = TrajectoryKind
    offers: list[SimOffer] = []
    counters: dict[str, int] = {}

    def ext_id(shop: SimShop) -> str:
        n = counters[shop.slug] = counters.get(shop.slug, 0) + 1
        if shop.source_kind == "marketplace_api":
            return f"MLB{3_100_000_000 + n * 7919}"
        if shop.source_kind == "merchant_feed":
            return f"ATC-{10_000 + n}"
        return f"{shop.slug[:3].upper()}-{n:06d}"

    def add(key: str, shop: str, product: str, traj: TrajectoryKind, **kw: Any) -> None:
        s = sh[shop]
        offers.append(_derived_offer(key, s, pr[product], traj, ext_id(s), **kw))

    # named, documented offers
    add(DEMO_BF_FAKE, "mega-tech", "tv-lg-55", T.BLACK_FRIDAY_FAKE,
        base_price=Decimal("2899.00"), cash_discount_pct=5, installments=10,
        freight=Decimal("0.00"))
    add(DEMO_BF_FAKE_FEED, "atacado-eletronicos", "galaxy-a55", T.BLACK_FRIDAY_FAKE,
        base_price=Decimal("2199.00"), freight=Decimal("19.90"))
    add(DEMO_SCAM, "super-ofertas-br", "iphone-15", T.SCAM, cash_discount_pct=0,
        installments=12, freight=Decimal("0.00"))
    add(DEMO_GENUINE_DROP, "ponto-digital", "ps5-slim", T.GENUINE_DROP,
        base_price=Decimal("3799.00"), cash_discount_pct=5, installments=10,
        anchor=DEMO_GENUINE_DROP_AT, freight=Decimal("0.00"))
    add(DEMO_FLAPPING, "loja-vitoria", "airfryer-walita", T.FLAPPING, flap_hours=3)

    # the rest: each product at >= 3 shops
    plan = {
        "galaxy-a55": [("casa-eletro", T.STEADY), ("mega-tech", T.DRIFT),
                       ("mercado-sim", T.STEADY), ("ponto-digital", T.STEADY)],
        "iphone-15": [("casa-eletro", T.STEADY), ("loja-vitoria", T.DRIFT),
                      ("mercado-sim", T.STEADY), ("ponto-digital", T.STEADY)],
        "moto-g84": [("casa-eletro", T.DRIFT), ("mercado-sim", T.BLACK_FRIDAY_FAKE),
                     ("atacado-eletronicos", T.STEADY)],
        "ideapad-3": [("casa-eletro", T.STEADY), ("mega-tech", T.STEADY),
                      ("ponto-digital", T.DRIFT)],
        "tv-lg-55": [("casa-eletro", T.STEADY), ("loja-vitoria", T.STEADY),
                     ("mercado-sim", T.DRIFT)],
        "airfryer-walita": [("casa-eletro", T.STEADY), ("atacado-eletronicos", T.GENUINE_DROP),
                            ("super-ofertas-br", T.STEADY)],
        "geladeira-brastemp": [("casa-eletro", T.STEADY), ("loja-vitoria", T.STEADY),
                               ("ponto-digital", T.FLAPPING)],
        "ps5-slim": [("casa-eletro", T.STEADY), ("mega-tech", T.BLACK_FRIDAY_FAKE),
                     ("mercado-sim", T.STEADY)],
        "jbl-tune-520": [("loja-vitoria", T.STEADY), ("mercado-sim", T.FLAPPING),
                         ("atacado-eletronicos", T.DRIFT)],
        "nespresso-vertuo": [("casa-eletro", T.STEADY), ("mega-tech", T.STEADY),
                             ("super-ofertas-br", T.SCAM)],
        "microondas-electrolux": [("loja-vitoria", T.STEADY), ("ponto-digital", T.STEADY),
                                  ("atacado-eletronicos", T.STEADY)],
        "robo-xiaomi": [("mega-tech", T.STEADY), ("mercado-sim", T.GENUINE_DROP),
                        ("loja-vitoria", T.STEADY)],
    }
    for product, rows in plan.items():
        for shop, traj in rows:
            add(f"{product}-{shop}", shop, product, traj)

    notes = {
        DEMO_BF_FAKE: "Black Fraude: +25 % five weeks before Black Friday, then 'de R$ 4.349,00 "
        "por R$ 2.899,00' (the 30-day low was R$ 3.619,00 by card; the 'de' was never charged)",
        DEMO_BF_FAKE_FEED: "the same Black Fraude pattern through a merchant feed (sale_price)",
        DEMO_SCAM: "scam: a 10-day-old shop with reputation 15 lists an iPhone 15 at 40 % of the "
        "market price, 'de' = market price",
        DEMO_GENUINE_DROP: "a real, lasting 25 % drop on 2026-11-20 13:00 UTC",
        DEMO_FLAPPING: "in stock 3 h, out of stock 3 h, no price while out of stock",
    }
    offer_faults = {
        # one page that answers with a bot wall for its first 2 requests
        "iphone-15-loja-vitoria": (Fault(FaultKind.BOT_WALL, count=2),),
    }
    return Scenario("demo", shops, products, offers, offer_faults=offer_faults, notes=notes)


# ----------------------------------------------------------------------------------------------
# scale scenario

_BRANDS = ("Samsung", "Motorola", "Xiaomi", "LG", "Philips", "Electrolux", "Brastemp", "Lenovo",
           "Dell", "JBL", "Sony", "Positivo", "Multilaser", "Mondial", "Britânia", "Arno")
_KINDS = (
    ("Smartphone", "Celulares", 1200), ("Notebook", "Informática", 3500),
    ("Smart TV", "TVs", 2600), ("Fone Bluetooth", "Áudio", 199), ("Air Fryer", "Eletroportáteis",
                                                                   450),
    ("Micro-ondas", "Eletrodomésticos", 750), ("Liquidificador", "Eletroportáteis", 199),
    ("Monitor", "Informática", 999), ("Ventilador", "Casa", 249), ("Tablet", "Informática", 1599),
)
_TRAJ_WEIGHTS = (
    (70, TrajectoryKind.STEADY), (15, TrajectoryKind.DRIFT), (5, TrajectoryKind.GENUINE_DROP),
    (4, TrajectoryKind.BLACK_FRIDAY_FAKE), (4, TrajectoryKind.FLAPPING), (2, TrajectoryKind.SCAM),
)
_TRAJ_TABLE = tuple(t for w, t in _TRAJ_WEIGHTS for _ in range(w))  # 100 entries


def scale_scenario(n_offers: int, seed: int = 0) -> Scenario:
    """A large generated catalog for benchmarks; offers are generated on first access.

    n_offers // 5 products (each at 5 distinct shops), max(10, n_offers // 2000) shops cycling
    page/page/page/merchant_feed/marketplace_api and the four page variants; trajectories 70 %
    STEADY, 15 % DRIFT, 5 % GENUINE_DROP, 4 % BLACK_FRIDAY_FAKE, 4 % FLAPPING, 2 % SCAM.
    Offer keys are "o{i}" (i = 0 .. n_offers-1).
    """
    n_shops = max(10, n_offers // 2000)
    kinds = ("page", "page", "page", "merchant_feed", "marketplace_api")
    variants = ("jsonld", "opengraph", "microdata", "mixed")
    styles = ("offer", "graph", "aggregate")
    shops = tuple(
        SimShop(
            slug=f"shop{i}", name=f"Loja Sim {i}", domain=f"shop{i}.sim{seed}.example.com.br",
            reputation_score=15 if i % 17 == 16 else 40 + (seed_of(f"{seed}:{i}") % 60),
            created_days_ago=10 if i % 17 == 16 else 100 + i,
            source_kind=kinds[i % 5], page_variant=variants[i % 4], jsonld_style=styles[i % 3],
            feed_format=("rss", "atom", "tsv")[i % 3], max_concurrent_requests=8,
            min_interval_ms=0, seller_id=100_000 + i,
        )
        for i in range(n_shops)
    )
    n_products = max(1, n_offers // 5)
    products = []
    for i in range(n_products):
        kname, cat, price = _KINDS[i % len(_KINDS)]
        brand = _BRANDS[(i // len(_KINDS)) % len(_BRANDS)]
        base = price_point(Decimal(price) * Decimal(80 + (seed_of(str(i), str(seed)) % 41)) / 100)
        products.append(
            SimProduct(f"p{i}", make_gtin13("790", seed * 10_000_000 + i),
                       f"{kname} {brand} Modelo {i:06d}", brand, cat, base)
        )
    products_t = tuple(products)

    def build() -> list[SimOffer]:
        out: list[SimOffer] = []
        append = out.append
        freights = (Decimal("0.00"), Decimal("0.00"), Decimal("19.90"), Decimal("29.90"))
        pct_page = (5, 8, 10, 5, 7)
        for i in range(n_offers):
            p_idx = i % n_products
            rep = i // n_products
            shop = shops[(p_idx + rep * 7) % n_shops]
            product = products_t[p_idx]
            s = zlib.crc32(b"%d:%d" % (seed, i))
            key = f"o{i}"
            kind = shop.source_kind
            if kind == "marketplace_api":
                ext = f"MLB{seed * 10**9 + i + 1_000_000_000}"
            elif kind == "merchant_feed":
                ext = f"F{seed}-{i}"
            else:
                ext = f"SKU{seed}-{i}"
            base = price_point(product.base_price * (950 + s % 131) / 1000)
            append(SimOffer(
                key, shop.slug, product.key, _TRAJ_TABLE[(s >> 7) % 100], ext,
                base, product.base_price, pct_page[(s >> 8) % 5] if kind == "page" else 0,
                10 + 2 * ((s >> 11) & 1), freights[(s >> 13) & 3], None,
                2 + (s >> 17) % 4, (s >> 20) % 24,
            ))
        return out

    return Scenario(f"scale-{n_offers}-{seed}", shops, products_t, build)


def iter_hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Whole UTC hours from start (floored) up to, not including, end."""
    h = hour_floor(start)
    while h < end:
        yield h
        h += timedelta(hours=1)

