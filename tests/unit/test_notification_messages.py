"""pt-BR notification rendering and webhook signatures (smartbuy_pipeline.domain.notifications)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from smartbuy_pipeline.domain.notifications import (
    PayloadError,
    ShortContent,
    format_money,
    reference_label,
    render_email,
    render_short,
    sign_webhook,
    verify_webhook,
)


def alert(**over) -> dict:
    p = {
        "kind": "alert",
        "alert_id": 41,
        "alert_type": "TARGET_PRICE",
        "household_id": 7,
        "product_id": 3,
        "product_name": 'Smart TV LG 55" 4K',
        "gtin": "7891234567895",
        "offer_id": 99,
        "shop_id": 5,
        "shop_name": "Mega Tech",
        "url": "https://megatech.example/p/tv-55?ref=sb&x=1",
        "price": "2879.20",
        "currency": "BRL",
        "freight": None,
        "total": None,
        "reference_price": "3000.00",
        "reference_kind": "target",
        "previous_notified_price": None,
        "risk_bucket": "A",
        "risk_score": 91,
        "availability": "in_stock",
        "observed_at": "2026-11-27T03:00:00+00:00",
    }
    p.update(over)
    return p


def test_money_uses_babel_pt_br():
    from decimal import Decimal

    assert format_money(Decimal("1234.5"), "BRL") == "R$ 1.234,50"
    assert format_money(Decimal("1234567.89"), "BRL") == "R$ 1.234.567,89"
    assert format_money(Decimal("0.99"), "BRL") == "R$ 0,99"
    assert format_money(Decimal("10"), "USD") == "US$ 10,00"


def test_target_price_email_exact():
    e = render_email(alert())
    assert e.subject == 'SmartBuy: Preço-alvo atingido - Smart TV LG 55" 4K por R$ 2.879,20'
    assert e.text == (
        "Preço-alvo atingido\n"
        "\n"
        'Produto: Smart TV LG 55" 4K\n'
        "Loja: Mega Tech\n"
        "Preço: R$ 2.879,20\n"
        "Referência (alvo): R$ 3.000,00\n"
        "Disponibilidade: em estoque\n"
        "Risco de cilada: A - baixo risco (nota 91/100)\n"
        "Observado em: 27/11/2026 03:00 UTC\n"
        "Link: https://megatech.example/p/tv-55?ref=sb&x=1\n"
        "\n"
        "Você recebe esta mensagem porque criou um alerta de preço no SmartBuy.\n"
    )
    assert '<html lang="pt-BR">' in e.html
    assert "<h2>Preço-alvo atingido</h2>" in e.html
    assert "<td>Smart TV LG 55&quot; 4K</td>" in e.html
    assert '<a href="https://megatech.example/p/tv-55?ref=sb&amp;x=1">Ver oferta</a>' in e.html


def test_target_price_short_exact():
    s = render_short(alert())
    assert s == ShortContent(
        title="Preço-alvo atingido",
        body='Smart TV LG 55" 4K por R$ 2.879,20 (Mega Tech)\nAlvo: R$ 3.000,00\nRisco de cilada: A - baixo risco (nota 91/100)',
        url="https://megatech.example/p/tv-55?ref=sb&x=1",
    )


def test_percent_drop_headline_and_reference():
    p = alert(alert_type="PERCENT_DROP", price="2550.00", reference_price="3000.00", reference_kind="created")
    e = render_email(p)
    assert e.subject == 'SmartBuy: Queda de 15% - Smart TV LG 55" 4K por R$ 2.550,00'
    assert "Referência (preço ao criar o alerta): R$ 3.000,00\n" in e.text
    s = render_short(p)
    assert s.title == "Queda de 15%"
    assert "Preço ao criar o alerta: R$ 3.000,00" in s.body.splitlines()


def test_percent_drop_median_reference_and_rounding():
    p = alert(alert_type="PERCENT_DROP", price="1234.50", reference_price="1452.35", reference_kind="median_30d")
    assert render_short(p).title == "Queda de 15%"
    assert "Referência (mediana de 30 dias): R$ 1.452,35" in render_email(p).text


def test_new_low_headlines():
    p = alert(alert_type="NEW_LOW", reference_kind="low_90d", reference_price="2999.90")
    e = render_email(p)
    assert e.subject.startswith("SmartBuy: Menor preço em 90 dias - ")
    assert "Referência (menor preço em 90 dias): R$ 2.999,90" in e.text
    assert render_short(p).title == "Menor preço em 90 dias"
    assert render_short(alert(alert_type="NEW_LOW", reference_kind="low_all_time")).title == "Menor preço já registrado"
    assert render_short(alert(alert_type="NEW_LOW", reference_kind="low_30d")).body.splitlines()[1] == (
        "Menor preço em 30 dias: R$ 3.000,00"
    )


def test_back_in_stock():
    p = alert(alert_type="BACK_IN_STOCK", reference_price=None, reference_kind=None, risk_bucket="B", risk_score=70)
    e = render_email(p)
    assert e.subject == 'SmartBuy: De volta ao estoque - Smart TV LG 55" 4K por R$ 2.879,20'
    assert "Referência" not in e.text
    assert "Risco de cilada: B - risco moderado (nota 70/100)" in e.text
    assert render_short(p).title == "De volta ao estoque"


def test_total_price_with_freight():
    p = alert(alert_type="TOTAL_PRICE", freight="29.90", total="2909.10", reference_price="2950.00", risk_bucket="C", risk_score=35)
    e = render_email(p)
    assert e.subject == 'SmartBuy: Total com frete abaixo do alvo - Smart TV LG 55" 4K por R$ 2.879,20'
    assert "Frete: R$ 29,90\nTotal com frete: R$ 2.909,10\nReferência (alvo): R$ 2.950,00\n" in e.text
    assert "Risco de cilada: C - alto risco (nota 35/100)" in e.text
    s = render_short(p)
    assert s.body.splitlines()[1] == "Total com frete: R$ 2.909,10"
    # free shipping, total computed
    e2 = render_email(alert(freight="0.00"))
    assert "Frete: grátis\nTotal com frete: R$ 2.879,20\n" in e2.text


def test_previous_price_and_no_url():
    e = render_email(alert(previous_notified_price="2950.00", url=None, risk_bucket=None, risk_score=None))
    assert "Último preço avisado: R$ 2.950,00" in e.text
    assert "Link:" not in e.text and "<a " not in e.html
    assert "Risco" not in e.text


def test_html_escapes_script_in_product_name():
    p = alert(product_name="TV <script>alert('x')</script> & Cia", shop_name="Loja <b>")
    e = render_email(p)
    assert "<script>" not in e.html
    assert "<td>TV &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Cia</td>" in e.html
    assert "<td>Loja &lt;b&gt;</td>" in e.html
    assert "<title>SmartBuy: Preço-alvo atingido - TV &lt;script&gt;" in e.html
    # the text part and the short form stay plain text
    assert "Produto: TV <script>alert('x')</script> & Cia" in e.text
    d = render_email(digest([p]))
    assert "<script>" not in d.html and "&lt;script&gt;" in d.html


def test_newlines_in_names_cannot_break_headers():
    e = render_email(alert(product_name="TV\r\nBcc: victim@example.com"))
    assert "\n" not in e.subject and "\r" not in e.subject
    assert e.subject == "SmartBuy: Preço-alvo atingido - TV Bcc: victim@example.com por R$ 2.879,20"


def digest(items: list[dict], count: int | None = None, start="2026-11-27T02:00:00Z", end="2026-11-27T03:00:00Z") -> dict:
    return {
        "kind": "digest",
        "household_id": 7,
        "count": len(items) if count is None else count,
        "items": items,
        "window_start": start,
        "window_end": end,
    }


def test_digest_email_and_short():
    items = [
        alert(),
        alert(alert_type="PERCENT_DROP", product_name="Notebook Dell", price="3400.00", reference_price="4000.00", url=None),
        alert(alert_type="TOTAL_PRICE", product_name="Geladeira", freight="100.00", total="2100.00", price="2000.00", shop_name="Casa"),
    ]
    d = digest(items, count=7)
    e = render_email(d)
    assert e.subject == "SmartBuy: 7 alertas na última hora"
    assert e.text.splitlines()[:6] == [
        "SmartBuy: 7 alertas na última hora",
        "",
        '- Preço-alvo atingido: Smart TV LG 55" 4K por R$ 2.879,20 (Mega Tech) - https://megatech.example/p/tv-55?ref=sb&x=1',
        "- Queda de 15%: Notebook Dell por R$ 3.400,00 (Mega Tech)",
        "- Total com frete abaixo do alvo: Geladeira por R$ 2.100,00 (Casa) - https://megatech.example/p/tv-55?ref=sb&x=1",
        "… e mais 4 alertas",
    ]
    assert e.html.count("<li>") == 4
    s = render_short(d)
    assert s.title == "SmartBuy: 7 alertas na última hora"
    assert s.body.splitlines()[1] == "- Queda de 15%: Notebook Dell por R$ 3.400,00 (Mega Tech)"
    assert s.url is None


def test_digest_periods():
    assert render_email(digest([alert()], start="2026-11-27T02:45:00Z")).subject == "SmartBuy: 1 alerta nos últimos 15 minutos"
    assert render_email(digest([alert()] * 2, start="2026-11-27T00:00:00Z")).subject == "SmartBuy: 2 alertas nas últimas 3 horas"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"price": None}, "price"),
        ({"price": 12.5}, "price"),  # floats are refused
        ({"price": "abc"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"product_name": ""}, "product_name"),
        ({"shop_name": None}, "shop_name"),
        ({"currency": "R$"}, "currency"),
        ({"alert_type": "SOMETHING"}, "alert_type"),
        ({"reference_kind": "weird"}, "reference_kind"),
        ({"alert_type": "PERCENT_DROP", "reference_price": None}, "reference_price"),
        ({"alert_type": "TOTAL_PRICE", "total": None, "freight": None}, "total"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"risk_bucket": "Z"}, "risk_bucket"),
        ({"risk_score": "90"}, "risk_score"),
        ({"availability": "maybe"}, "availability"),
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"observed_at": "2026-11-27T03:00:00"}, "observed_at"),  # naive
    ],
)
def test_payload_errors_name_the_field(change, field):
    p = alert(**change)
    for render in (render_email, render_short):
        with pytest.raises(PayloadError) as ei:
            render(p)
        assert ei.value.field == field
        assert repr(field) in str(ei.value)


def test_payload_error_in_digest_item_and_kind():
    bad = copy.deepcopy(alert())
    del bad["price"]
    with pytest.raises(PayloadError) as ei:
        render_email(digest([alert(), bad]))
    assert ei.value.field == "items[1].price"
    with pytest.raises(PayloadError) as ei:
        render_email(digest([alert()] * 3, count=2))
    assert ei.value.field == "count"
    with pytest.raises(PayloadError) as ei:
        render_short({"kind": "other"})
    assert ei.value.field == "kind"


def test_reference_labels():
    assert reference_label("target") == "alvo"
    assert reference_label("created") == "preço ao criar o alerta"
    assert reference_label("median_30d") == "mediana de 30 dias"
    assert reference_label("low_1d") == "menor preço em 1 dia"
    assert reference_label("low_all_time") == "menor preço já registrado"
    assert reference_label(None) is None


# --------------------------------------------------------------------------- signatures

SECRET = "whsec_test_123"
BODY = b'{"delivery_id":1,"attempt":1,"kind":"alert"}'


def test_sign_webhook_known_vector():
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, 1_700_000_000, BODY) == "sha256=" + expected


def test_verify_webhook_accepts_valid_and_rotated():
    sig = sign_webhook(SECRET, 1_700_000_000, BODY)
    assert verify_webhook(SECRET, "1700000000", sig, BODY, now=1_700_000_100)
    assert verify_webhook(SECRET, "1700000000", sig, BODY, now=datetime.fromtimestamp(1_700_000_000, UTC))
    assert verify_webhook(SECRET, "1700000000", "sha256=00," + sig, BODY, now=1_700_000_000)


def test_verify_webhook_rejects_tampering_and_staleness():
    sig = sign_webhook(SECRET, 1_700_000_000, BODY)
    assert not verify_webhook(SECRET, "1700000000", sig, BODY.replace(b"1", b"2", 1), now=1_700_000_000)
    assert not verify_webhook("other-secret", "1700000000", sig, BODY, now=1_700_000_000)
    assert not verify_webhook(SECRET, "1700000001", sig, BODY, now=1_700_000_000)  # timestamp is signed
    assert not verify_webhook(SECRET, "1700000000", sig, BODY, now=1_700_000_301)  # stale
    assert not verify_webhook(SECRET, "1700000000", sig, BODY, now=1_699_999_699)  # from the future
    assert verify_webhook(SECRET, "1700000000", sig, BODY, now=1_700_000_301, tolerance_s=600)
    assert not verify_webhook(SECRET, None, sig, BODY, now=1_700_000_000)
    assert not verify_webhook(SECRET, "17e8", sig, BODY, now=1_700_000_000)
    assert not verify_webhook(SECRET, "1700000000", "", BODY, now=1_700_000_000)
    assert not verify_webhook(SECRET, "1700000000", sig.upper(), BODY, now=1_700_000_000)
