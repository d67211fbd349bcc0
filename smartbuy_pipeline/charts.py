"""Price-history charts (`smartbuy chart`), rendered without a database.

The series come from `smartbuy_pipeline.db.charts.load_chart_data` (or are built in memory by
tests); `render_png` draws them the way Keepa and camelcamelcamel do: one step line per shop (a
price holds until the next observation; no price / out of stock is a gap), the shop's reference
("de") price dashed in the same colour, the 30-day low dotted, and a marker wherever an offer's
risk bucket changed (A green, B orange, C red).

Money stays `Decimal` in the data classes; it becomes float only for matplotlib's axis, inside
`render_png`. The output is deterministic: fixed size and DPI, matplotlib's default style (a
user's matplotlibrc does not leak in) and no "Software" or date metadata in the PNG, so the same
data gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

FIG_SIZE_IN = (12.0, 6.0)
DPI = 100
PNG_SIZE = (int(FIG_SIZE_IN[0] * DPI), int(FIG_SIZE_IN[1] * DPI))  # (width, height) in pixels
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BUCKET_COLOURS = {"A": "#2e7d32", "B": "#ef6c00", "C": "#c62828"}
# Availability values drawn as a gap even when the page still shows a price.
GAP_AVAILABILITY = frozenset({"out_of_stock", "discontinued"})
# Shop colours: colour-blind-friendly (Okabe-Ito), then matplotlib's tab10.
SHOP_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000",
                "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class PricePoint:
    """The offer's state from `at` until the next point (the last point ends the line)."""

    at: datetime
    price: Decimal | None
    reference_price: Decimal | None
    availability: str

    @property
    def shown_price(self) -> Decimal | None:
        """The price drawn: None (a gap) when no price is shown or the offer is out of stock."""
        return None if self.availability in GAP_AVAILABILITY else self.price


@dataclass(frozen=True)
class ShopSeries:
    offer_id: int
    shop: str
    points: tuple[PricePoint, ...]


@dataclass(frozen=True)
class LowPoint:
    at: datetime
    price: Decimal


@dataclass(frozen=True)
class BucketChange:
    offer_id: int
    at: datetime
    bucket: str
    previous_bucket: str | None  # None: the offer's first score
    score: int

    @property
    def label(self) -> str:
        return self.bucket if self.previous_bucket is None else f"{self.previous_bucket}\u2192{self.bucket}"


@dataclass(frozen=True)
class ChartData:
    product: str
    gtin: str  # as stored (GTIN-14)
    currency: str
    start: datetime
    end: datetime
    series: tuple[ShopSeries, ...]
    low_30d: tuple[LowPoint, ...] = ()
    bucket_changes: tuple[BucketChange, ...] = field(default=())

    @property
    def points(self) -> int:
        return sum(len(s.points) for s in self.series)


def display_gtin(gtin14: str) -> str:
    """The GTIN as printed on the box: leading zeros dropped down to 8, 12, 13 or 14 digits."""
    digits = gtin14.strip().lstrip("0") or "0"
    width = next(n for n in (8, 12, 13, 14) if n >= len(digits))
    return digits.zfill(width)


def format_money(amount: Decimal | float, currency: str = "BRL") -> str:
    """pt-BR money: Decimal('1234.56') -> 'R$ 1.234,56' (a plain space after the symbol)."""
    from babel.numbers import format_currency

    return format_currency(amount, currency, locale="pt_BR").replace("\xa0", " ")


def _num(amount: Decimal | None) -> float:
    # Plotting only: matplotlib's axis works in float. The data itself stays Decimal.
    return float("nan") if amount is None else float(amount)


def _price_at(series: ShopSeries | None, at: datetime) -> Decimal | None:
    """The price shown by `series` at `at` (the last point at or before it)."""
    if series is None:
        return None
    shown = None
    for p in series.points:
        if p.at > at:
            break
        shown = p.shown_price
    return shown


def render_png(data: ChartData) -> bytes:
    """The chart as PNG bytes (PNG_SIZE pixels); the same data always gives the same bytes."""
    import matplotlib
    import matplotlib.dates as mdates
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    if not data.series:
        raise ValueError("nothing to chart: no series")
    with matplotlib.style.context("default"), matplotlib.rc_context({"font.size": 9}):
        fig = Figure(figsize=FIG_SIZE_IN, dpi=DPI)
        # Fixed margins (room for the money labels left, the legend right): one layout for every chart.
        fig.subplots_adjust(left=0.085, right=0.80, top=0.93, bottom=0.10)
        FigureCanvasAgg(fig)  # headless Agg canvas; no pyplot, no global figure state
        ax = fig.add_subplot()
        handles: list = []

        def line(points: Sequence[tuple[datetime, Decimal | None]], **kw):
            xs = mdates.date2num([at for at, _ in points])
            ys = [_num(v) for _, v in points]
            return ax.step(xs, ys, where="post", **kw)[0]

        any_reference = False
        for i, s in enumerate(data.series):
            colour = SHOP_COLOURS[i % len(SHOP_COLOURS)]
            h = line([(p.at, p.shown_price) for p in s.points], color=colour, linewidth=1.8,
                     label=s.shop, zorder=3)
            handles.append(h)
            if any(p.reference_price is not None for p in s.points):
                any_reference = True
                line([(p.at, p.reference_price) for p in s.points], color=colour, linewidth=1.1,
                     linestyle=(0, (5, 3)), alpha=0.75, zorder=2)
        if any_reference:
            handles.append(Line2D([], [], color="#555555", linewidth=1.1, linestyle=(0, (5, 3)),
                                  label='"de" (reference price)'))
        if data.low_30d:
            handles.append(line([(p.at, p.price) for p in data.low_30d], color="#222222", linewidth=1.4,
                                linestyle=(0, (1, 2)), label="30-day low", zorder=4))

        by_offer = {s.offer_id: s for s in data.series}
        seen_buckets: set[str] = set()
        for change in data.bucket_changes:
            price = _price_at(by_offer.get(change.offer_id), change.at)
            colour = BUCKET_COLOURS.get(change.bucket, "#7f7f7f")
            x = mdates.date2num(change.at)
            if price is None:  # no price shown at that moment: pin the marker to the bottom edge
                transform, y = ax.get_xaxis_transform(), 0.02
            else:
                transform, y = ax.transData, _num(price)
            ax.plot([x], [y], marker="o", markersize=8, color=colour, markeredgecolor="white",
                    markeredgewidth=1.2, linestyle="none", transform=transform, zorder=5)
            ax.annotate(change.label, (x, y), xycoords=transform, xytext=(0, 8),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7,
                        color=colour, fontweight="bold", zorder=6)
            seen_buckets.add(change.bucket)
        for bucket in sorted(seen_buckets):
            handles.append(Line2D([], [], marker="o", markersize=7, linestyle="none",
                                  color=BUCKET_COLOURS.get(bucket, "#7f7f7f"), markeredgecolor="white",
                                  label=f"risk bucket {bucket}"))

        ax.set_xlim(mdates.date2num(data.start), mdates.date2num(data.end))
        locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        days = (data.end - data.start).total_seconds() / 86400
        ax.set_xlabel(f"UTC \u2014 {len(data.series)} shop(s), last {days:g} days to "
                      f"{data.end.astimezone(UTC):%Y-%m-%d %H:%M} UTC", color="#444444")
        ax.yaxis.set_major_formatter(FuncFormatter(
            lambda v, _pos: format_money(Decimal(f"{v:.2f}"), data.currency)))
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"{data.product} \u2014 GTIN {display_gtin(data.gtin)}", loc="left", fontsize=12,
                     fontweight="bold")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  fontsize=8, borderaxespad=0.0)

        buf = io.BytesIO()
        # No "Software" (matplotlib version) in the PNG: bytes depend on the data only.
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
