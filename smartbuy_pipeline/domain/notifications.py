"""Notification content (pt-BR) and webhook signatures. Pure: no I/O.

    render_email(payload) -> EmailContent(subject, text, html)
    render_short(payload) -> ShortContent(title, body, url)      # chat (Apprise) and Web Push
    sign_webhook(secret, timestamp, body) -> "sha256=<hex>"
    verify_webhook(secret, timestamp_header, signature_header, body, *, now, tolerance_s=300)

The payload is the event dict built by the alert dispatcher (JSON types only; money as decimal
strings such as "1234.50", never floats). Two kinds:

- ``{"kind": "alert", ...}``: one alert (see `ALERT_TYPES` and `REFERENCE_KINDS`);
- ``{"kind": "digest", "count": n, "items": [alert, ...], "window_start", "window_end", ...}``:
  alerts held back by the per-household rate limit.

A missing or invalid field raises `PayloadError` naming the field ("price", "items[2].url"); the
channel then fails that delivery as INVALID with the message.

Money is formatted by Babel for pt_BR ("R$ 1.234,50"; Babel's no-break space after the symbol is
replaced by a plain space so the text is the same in every client). Times are shown in UTC
("27/11/2026 03:00 UTC"). Every value interpolated into HTML is escaped, and a link is only
rendered for an http(s) URL (a "javascript:" URL is a PayloadError, not a link).

Webhook signature: ``sha256=`` + hex HMAC-SHA256 keyed with the channel secret (UTF-8) over
``f"{timestamp}.".encode() + body``, where `timestamp` is the integer Unix time sent in
``X-SmartBuy-Timestamp`` and `body` the exact request bytes. Receivers recompute it, compare in
constant time and reject timestamps more than `tolerance_s` (5 min) away from their clock, which
bounds replays; the ``Idempotency-Key`` header (the delivery id) removes duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlsplit

from babel.numbers import format_currency

__all__ = [
    "ALERT_TYPES",
    "REFERENCE_KINDS",
    "RISK_LABELS",
    "EmailContent",
    "PayloadError",
    "ShortContent",
    "format_money",
    "headline",
    "reference_label",
    "render_email",
    "render_short",
    "sign_webhook",
    "verify_webhook",
]

LOCALE = "pt_BR"
ALERT_TYPES = frozenset({"TARGET_PRICE", "PERCENT_DROP", "NEW_LOW", "BACK_IN_STOCK", "TOTAL_PRICE"})
# Fixed reference kinds; "low_<N>d" and "median_<N>d" are parsed (N days).
REFERENCE_KINDS = {
    "target": "alvo",
    "created": "preço ao criar o alerta",
    "low_all_time": "menor preço já registrado",
}
RISK_LABELS = {
    "A": "A - baixo risco",
    "B": "B - risco moderado",
    "C": "C - alto risco",
}
AVAILABILITY_LABELS = {
    "in_stock": "em estoque",
    "out_of_stock": "esgotado",
    "preorder": "pré-venda",
    "backorder": "sob encomenda",
    "discontinued": "fora de linha",
    "unknown": "não informada",
}
_DAYS_KIND = re.compile(r"^(low|median)_([1-9][0-9]{0,3})d$")
_WS = re.compile(r"\s+")
_MAX_TEXT = 300  # product / shop names are cut here (subjects, push bodies)
DIGEST_SHORT_MAX_ITEMS = 10
FOOTER = "Você recebe esta mensagem porque criou um alerta de preço no SmartBuy."


class PayloadError(ValueError):
    """The event payload cannot be rendered; `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid notification payload: field {field!r} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class ShortContent:
    """For chat (Apprise) and Web Push: a short title, a few lines of body, the offer link."""

    title: str
    body: str
    url: str | None = None


# --------------------------------------------------------------------------- field readers


def _get(p: Mapping[str, Any], key: str, prefix: str, *, required: bool) -> Any:
    if not isinstance(p, Mapping):
        raise PayloadError(prefix.rstrip(".") or "payload", "must be a JSON object")
    value = p.get(key)
    if value is None and required:
        raise PayloadError(prefix + key, "is missing")
    return value


def _text(p: Mapping[str, Any], key: str, prefix: str = "", *, required: bool = True) -> str | None:
    v = _get(p, key, prefix, required=required)
    if v is None:
        return None
    if not isinstance(v, str):
        raise PayloadError(prefix + key, f"must be a string, got {type(v).__name__}")
    v = _WS.sub(" ", v).strip()  # one line: no header injection, no layout breaking
    if not v:
        if required:
            raise PayloadError(prefix + key, "is empty")
        return None
    if len(v) > _MAX_TEXT:
        v = v[: _MAX_TEXT - 1].rstrip() + "…"
    return v


def _amount(p: Mapping[str, Any], key: str, prefix: str = "", *, required: bool = False, positive: bool = False) -> Decimal | None:
    v = _get(p, key, prefix, required=required)
    if v is None:
        return None
    if isinstance(v, bool) or isinstance(v, float):
        raise PayloadError(prefix + key, f"must be a decimal string, got {type(v).__name__}")
    if not isinstance(v, (str, int, Decimal)):
        raise PayloadError(prefix + key, f"must be a decimal string, got {type(v).__name__}")
    try:
        d = Decimal(v.strip()) if isinstance(v, str) else Decimal(v)
    except InvalidOperation:
        raise PayloadError(prefix + key, "is not a decimal amount") from None
    if not d.is_finite() or d < 0 or (positive and d == 0):
        raise PayloadError(prefix + key, "must be a " + ("positive" if positive else "non-negative") + " amount")
    if d >= Decimal("1e12"):
        raise PayloadError(prefix + key, "is out of range")
    return d


def _currency(p: Mapping[str, Any], prefix: str) -> str:
    v = _get(p, "currency", prefix, required=True)
    if not isinstance(v, str) or len(v) != 3 or not v.isascii() or not v.isalpha() or not v.isupper():
        raise PayloadError(prefix + "currency", "must be an ISO 4217 code such as 'BRL'")
    return v


def _url(p: Mapping[str, Any], prefix: str) -> str | None:
    v = _get(p, "url", prefix, required=False)
    if v is None:
        return None
    if not isinstance(v, str):
        raise PayloadError(prefix + "url", f"must be a string, got {type(v).__name__}")
    v = v.strip()
    if not v:
        return None
    try:
        parts = urlsplit(v)
    except ValueError:
        raise PayloadError(prefix + "url", "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c in v for c in " \r\n\t\"'<>`"):
        raise PayloadError(prefix + "url", "must be an absolute http(s) URL")
    return v


def _timestamp(p: Mapping[str, Any], key: str, prefix: str, *, required: bool = True) -> datetime | None:
    v = _get(p, key, prefix, required=required)
    if v is None:
        return None
    if not isinstance(v, str):
        raise PayloadError(prefix + key, "must be an ISO-8601 string")
    try:
        dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(prefix + key, "is not an ISO-8601 timestamp") from None
    if dt.tzinfo is None:
        raise PayloadError(prefix + key, "must carry a UTC offset")
    return dt.astimezone(UTC)


def format_money(amount: Decimal, currency: str) -> str:
    """pt-BR money via Babel: Decimal('1234.5'), 'BRL' -> 'R$ 1.234,50' (plain space)."""
    return format_currency(amount, currency, locale=LOCALE).replace("\u00a0", " ").replace("\u202f", " ")


def _format_when(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%d/%m/%Y %H:%M") + " UTC"


def reference_label(kind: str | None) -> str | None:
    """What a reference price is, in pt-BR ("low_30d" -> "menor preço em 30 dias")."""
    if kind is None:
        return None
    if kind in REFERENCE_KINDS:
        return REFERENCE_KINDS[kind]
    m = _DAYS_KIND.match(kind)
    if m is None:
        raise PayloadError("reference_kind", f"is unknown: {kind[:40]!r}")
    n = int(m.group(2))
    days = "1 dia" if n == 1 else f"{n} dias"
    return f"menor preço em {days}" if m.group(1) == "low" else f"mediana de {days}"


# --------------------------------------------------------------------------- alert model


@dataclass(frozen=True, slots=True)
class _Alert:
    alert_type: str
    headline: str
    product: str
    shop: str
    price: str
    currency: str
    url: str | None
    freight: str | None
    total: str | None
    reference: str | None
    reference_label: str | None
    previous: str | None
    risk: str | None
    availability: str | None
    observed_at: datetime


def headline(alert_type: str, *, price: Decimal, reference: Decimal | None, reference_kind: str | None) -> str:
    """The alert's one-line pt-BR headline ("Queda de 15%", "Menor preço em 90 dias", ...)."""
    if alert_type == "TARGET_PRICE":
        return "Preço-alvo atingido"
    if alert_type == "PERCENT_DROP":
        if reference is None or reference <= 0:
            raise PayloadError("reference_price", "is required for a PERCENT_DROP alert")
        pct = ((reference - price) / reference * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        if pct < 1:
            return "Queda de preço"
        return f"Queda de {pct}%"
    if alert_type == "NEW_LOW":
        if reference_kind == "low_all_time":
            return "Menor preço já registrado"
        m = _DAYS_KIND.match(reference_kind or "")
        if m is not None and m.group(1) == "low":
            n = int(m.group(2))
            return "Menor preço em 1 dia" if n == 1 else f"Menor preço em {n} dias"
        return "Novo menor preço"
    if alert_type == "BACK_IN_STOCK":
        return "De volta ao estoque"
    if alert_type == "TOTAL_PRICE":
        return "Total com frete abaixo do alvo"
    raise PayloadError("alert_type", f"is unknown: {str(alert_type)[:40]!r}")


def _parse_alert(p: Mapping[str, Any], prefix: str = "") -> _Alert:
    if not isinstance(p, Mapping):
        raise PayloadError(prefix.rstrip(".") or "payload", "must be a JSON object")
    kind = p.get("kind", "alert")
    if kind != "alert":
        raise PayloadError(prefix + "kind", f"must be 'alert', got {str(kind)[:20]!r}")
    alert_type = _text(p, "alert_type", prefix)
    assert alert_type is not None
    if alert_type not in ALERT_TYPES:
        raise PayloadError(prefix + "alert_type", f"is unknown: {alert_type[:40]!r}")
    product = _text(p, "product_name", prefix)
    shop = _text(p, "shop_name", prefix)
    currency = _currency(p, prefix)
    price = _amount(p, "price", prefix, required=True, positive=True)
    assert price is not None and product is not None and shop is not None
    freight = _amount(p, "freight", prefix)
    total = _amount(p, "total", prefix, positive=True)
    if total is None and freight is not None:
        total = price + freight
    if alert_type == "TOTAL_PRICE" and total is None:
        raise PayloadError(prefix + "total", "is required for a TOTAL_PRICE alert")
    reference = _amount(p, "reference_price", prefix, positive=True)
    ref_kind_raw = _get(p, "reference_kind", prefix, required=False)
    if ref_kind_raw is not None and not isinstance(ref_kind_raw, str):
        raise PayloadError(prefix + "reference_kind", "must be a string")
    try:
        ref_label = reference_label(ref_kind_raw)
        title = headline(alert_type, price=price, reference=reference, reference_kind=ref_kind_raw)
    except PayloadError as exc:
        raise PayloadError(prefix + exc.field, exc.problem) from None
    previous = _amount(p, "previous_notified_price", prefix, positive=True)
    bucket = _get(p, "risk_bucket", prefix, required=False)
    risk: str | None = None
    if bucket is not None:
        if bucket not in RISK_LABELS:
            raise PayloadError(prefix + "risk_bucket", "must be 'A', 'B' or 'C'")
        risk = RISK_LABELS[bucket]
        score = _get(p, "risk_score", prefix, required=False)
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
                raise PayloadError(prefix + "risk_score", "must be an integer from 0 to 100")
            risk += f" (nota {score}/100)"
    availability = _get(p, "availability", prefix, required=False)
    avail_label: str | None = None
    if availability is not None:
        if not isinstance(availability, str) or availability not in AVAILABILITY_LABELS:
            raise PayloadError(prefix + "availability", "is not a known availability")
        avail_label = AVAILABILITY_LABELS[availability]
    observed = _timestamp(p, "observed_at", prefix)
    assert observed is not None

    def fmt(d: Decimal | None) -> str | None:
        return None if d is None else format_money(d, currency)

    return _Alert(
        alert_type=alert_type,
        headline=title,
        product=product,
        shop=shop,
        price=format_money(price, currency),
        currency=currency,
        url=_url(p, prefix),
        freight=None if freight is None else ("grátis" if freight == 0 else format_money(freight, currency)),
        total=fmt(total),
        reference=fmt(reference),
        reference_label=ref_label,
        previous=fmt(previous),
        risk=risk,
        availability=avail_label,
        observed_at=observed,
    )


def _alert_rows(a: _Alert) -> list[tuple[str, str]]:
    """(label, value) rows of an alert, in display order."""
    rows = [("Produto", a.product), ("Loja", a.shop), ("Preço", a.price)]
    if a.freight is not None:
        rows.append(("Frete", a.freight))
    if a.total is not None:
        rows.append(("Total com frete", a.total))
    if a.reference is not None:
        label = f"Referência ({a.reference_label})" if a.reference_label else "Referência"
        rows.append((label, a.reference))
    if a.previous is not None:
        rows.append(("Último preço avisado", a.previous))
    if a.availability is not None:
        rows.append(("Disponibilidade", a.availability))
    if a.risk is not None:
        rows.append(("Risco de cilada", a.risk))
    rows.append(("Observado em", _format_when(a.observed_at)))
    return rows


def _alert_line(a: _Alert) -> str:
    """One line per alert in a digest."""
    price = a.total if a.alert_type == "TOTAL_PRICE" and a.total else a.price
    return f"{a.headline}: {a.product} por {price} ({a.shop})"


# --------------------------------------------------------------------------- digest model


@dataclass(frozen=True, slots=True)
class _Digest:
    count: int
    items: list[_Alert]
    period: str


def _period(start: datetime, end: datetime) -> str:
    seconds = (end - start).total_seconds()
    if seconds <= 0:
        raise PayloadError("window_end", "must be after window_start")
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return "no último minuto" if minutes == 1 else f"nos últimos {minutes} minutos"
    hours = round(minutes / 60)
    return "na última hora" if hours == 1 else f"nas últimas {hours} horas"


def _parse_digest(p: Mapping[str, Any]) -> _Digest:
    items_raw = p.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise PayloadError("items", "must be a non-empty list of alerts")
    count = p.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < len(items_raw):
        raise PayloadError("count", "must be an integer >= the number of items")
    start = _timestamp(p, "window_start", "")
    end = _timestamp(p, "window_end", "")
    assert start is not None and end is not None
    items = [_parse_alert(item, f"items[{i}].") for i, item in enumerate(items_raw)]
    return _Digest(count=count, items=items, period=_period(start, end))


def _digest_title(d: _Digest) -> str:
    noun = "alerta" if d.count == 1 else "alertas"
    return f"SmartBuy: {d.count} {noun} {d.period}"


def _more(d: _Digest, shown: int) -> str | None:
    rest = d.count - shown
    if rest <= 0:
        return None
    return f"… e mais {rest} alerta" + ("" if rest == 1 else "s")


def _kind(p: Any) -> str:
    if not isinstance(p, Mapping):
        raise PayloadError("payload", "must be a JSON object")
    kind = p.get("kind")
    if kind not in ("alert", "digest", "ops"):
        raise PayloadError("kind", "must be 'alert', 'digest' or 'ops'")
    return kind


def _ops(p: Mapping[str, Any]) -> ShortContent:
    """An ops notice (a failed run): {"kind": "ops", "title", "body", "url"}, already plain text."""
    fields = {}
    for name in ("title", "body"):
        value = p.get(name)
        if not isinstance(value, str) or not value.strip():
            raise PayloadError(name, "must be a non-empty string")
        fields[name] = value.strip()
    url = p.get("url")
    return ShortContent(title=fields["title"], body=fields["body"], url=url if isinstance(url, str) else None)


# --------------------------------------------------------------------------- rendering


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def _html_page(title: str, inner: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="pt-BR"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title></head>\n"
        '<body style="font-family:Arial,Helvetica,sans-serif;color:#222">\n'
        f"{inner}\n"
        f'<p style="color:#777;font-size:12px">{_e(FOOTER)}</p>\n'
        "</body></html>\n"
    )


def render_email(payload: Mapping[str, Any]) -> EmailContent:
    """Subject, plain text and HTML of the e-mail for an alert, a digest (pt-BR) or an ops notice."""
    kind = _kind(payload)
    if kind == "ops":
        o = _ops(payload)
        text = o.body + (f"\n\n{o.url}" if o.url else "") + "\n"
        inner = f"<h2>{_e(o.title)}</h2>\n<pre>{_e(o.body)}</pre>"
        if o.url:
            inner += f'\n<p><a href="{_e(o.url)}">{_e(o.url)}</a></p>'
        return EmailContent(subject=o.title, text=text, html=_html_page(o.title, inner))
    if kind == "alert":
        a = _parse_alert(payload)
        subject = f"SmartBuy: {a.headline} - {a.product} por {a.price}"
        rows = _alert_rows(a)
        lines = [a.headline, ""] + [f"{k}: {v}" for k, v in rows]
        if a.url:
            lines.append(f"Link: {a.url}")
        text = "\n".join(lines + ["", FOOTER]) + "\n"
        table = "\n".join(
            f'<tr><th align="left" style="padding-right:12px">{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in rows
        )
        inner = f"<h2>{_e(a.headline)}</h2>\n<table>\n{table}\n</table>"
        if a.url:
            inner += f'\n<p><a href="{_e(a.url)}">Ver oferta</a></p>'
        return EmailContent(subject=subject, text=text, html=_html_page(subject, inner))
    d = _parse_digest(payload)
    subject = _digest_title(d)
    lines = [subject, ""]
    lis = []
    for a in d.items:
        line = _alert_line(a)
        lines.append(f"- {line}" + (f" - {a.url}" if a.url else ""))
        item = _e(line)
        if a.url:
            item += f' - <a href="{_e(a.url)}">ver oferta</a>'
        lis.append(f"<li>{item}</li>")
    more = _more(d, len(d.items))
    if more:
        lines.append(more)
        lis.append(f"<li>{_e(more)}</li>")
    text = "\n".join(lines + ["", FOOTER]) + "\n"
    inner = f"<h2>{_e(subject)}</h2>\n<ul>\n" + "\n".join(lis) + "\n</ul>"
    return EmailContent(subject=subject, text=text, html=_html_page(subject, inner))


def render_short(payload: Mapping[str, Any]) -> ShortContent:
    """Title + a few lines for chat and push (pt-BR); `url` is the offer link (alerts) or the run's
    page (ops notices)."""
    kind = _kind(payload)
    if kind == "ops":
        return _ops(payload)
    if kind == "alert":
        a = _parse_alert(payload)
        lines = [f"{a.product} por {a.price} ({a.shop})"]
        if a.total is not None:
            lines.append(f"Total com frete: {a.total}")
        if a.reference is not None:
            label = (a.reference_label or "referência")
            lines.append(f"{label[0].upper()}{label[1:]}: {a.reference}")
        if a.risk is not None:
            lines.append(f"Risco de cilada: {a.risk}")
        return ShortContent(title=a.headline, body="\n".join(lines), url=a.url)
    d = _parse_digest(payload)
    shown = d.items[:DIGEST_SHORT_MAX_ITEMS]
    lines = [f"- {_alert_line(a)}" for a in shown]
    more = _more(d, len(shown))
    if more:
        lines.append(more)
    return ShortContent(title=_digest_title(d), body="\n".join(lines), url=None)


# --------------------------------------------------------------------------- webhook signatures


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """'sha256=' + hex HMAC-SHA256(secret, f"{timestamp}." + body)."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise TypeError("timestamp must be an int (Unix seconds)")
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float | datetime,
    tolerance_s: float = 300,
) -> bool:
    """True if `signature_header` signs `body` at `timestamp_header` and the timestamp is within
    `tolerance_s` of `now` (Unix seconds or an aware datetime). Several comma-separated
    signatures are accepted (secret rotation); comparison is constant-time."""
    if not timestamp_header or not signature_header:
        return False
    ts_text = timestamp_header.strip()
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        return False
    ts = int(ts_text)
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - ts) > tolerance_s:
        return False
    expected = sign_webhook(secret, ts, body).encode("ascii")
    ok = False
    for candidate in signature_header.split(","):
        c = candidate.strip().encode("utf-8", "replace")
        ok |= hmac.compare_digest(c, expected)
    return ok
