"""Notification channels against real local servers (smartbuy_pipeline.notifications).

Everything goes over real sockets: webhooks to the LocalInbox's aiohttp receiver, e-mail to its
aiosmtpd server (plain and STARTTLS + AUTH with a throw-away self-signed certificate), Apprise's
json:// plugin to the inbox's /apprise route.

Web Push: the push *service* (FCM, Mozilla autopush, ...) is played by the LocalInbox's /push
endpoint, because the real push services are remote. Everything on our side runs for real:
pywebpush encrypts the payload (aes128gcm, RFC 8291) for a browser key pair generated in the
test, signs the VAPID JWT, and POSTs it; the test then decrypts the body with the browser's
private key and checks the VAPID signature.

No database is involved.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time

import http_ece
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from smartbuy_pipeline.domain.notifications import verify_webhook
from smartbuy_pipeline.notifications.channels import (
    ChannelSettings,
    Delivery,
    DeliveryResult,
    Outcome,
    deliver_all,
    webhook_body,
)
from smartbuy_pipeline.notifications.inbox import LocalInbox, self_signed_certificate

SECRET = "whsec_Sup3r-Secret-value"


def alert(**over) -> dict:
    p = {
        "kind": "alert",
        "alert_id": 41,
        "alert_type": "PERCENT_DROP",
        "household_id": 7,
        "product_id": 3,
        "product_name": "Notebook Dell <Inspiron>",
        "gtin": "7891234567895",
        "offer_id": 99,
        "shop_id": 5,
        "shop_name": "Mega Tech",
        "url": "https://megatech.example/p/notebook",
        "price": "3400.00",
        "currency": "BRL",
        "freight": "25.00",
        "total": "3425.00",
        "reference_price": "4000.00",
        "reference_kind": "median_30d",
        "previous_notified_price": None,
        "risk_bucket": "A",
        "risk_score": 88,
        "availability": "in_stock",
        "observed_at": "2026-11-27T03:00:00Z",
    }
    p.update(over)
    return p


_ids = iter(range(1000, 10_000_000))


def delivery(kind: str, target: str, secret: str | None = None, payload: dict | None = None, *, attempt: int = 1, delivery_id: int | None = None) -> Delivery:
    return Delivery(
        delivery_id=next(_ids) if delivery_id is None else delivery_id,
        attempt=attempt,
        channel_id=500,
        kind=kind,
        target=target,
        secret=secret,
        payload=alert() if payload is None else payload,
    )


def run(deliveries: list[Delivery], settings: ChannelSettings, **kw) -> dict[int, DeliveryResult]:
    groups: list[list[DeliveryResult]] = []
    counts = deliver_all(deliveries, settings, on_results=groups.append, **kw)
    results = {r.delivery_id: r for g in groups for r in g}
    assert len(results) == len(deliveries) == sum(counts.values())
    for r in results.values():
        assert r.started_at.tzinfo is not None and r.finished_at >= r.started_at
        assert r.error is None or ("\n" not in r.error and len(r.error) <= 300)
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inbox():
    with LocalInbox() as box:
        yield box


@pytest.fixture()
def settings(inbox) -> ChannelSettings:
    return inbox.channel_settings(timeout_s=5.0)


# --------------------------------------------------------------------------- webhook


def test_webhook_signed_json_and_idempotent(inbox, settings):
    url = inbox.webhook_url("wh-basic", secret=SECRET)
    d = delivery("webhook", url, SECRET, delivery_id=777, attempt=2)
    res = run([d], settings)[777]
    assert res.outcome is Outcome.SENT and res.status_code == 200 and res.error is None

    [rec] = inbox.hooks("wh-basic")
    assert rec.key == "777" and rec.signature_ok is True
    assert rec.headers["content-type"].startswith("application/json")
    assert rec.headers["user-agent"].startswith("SmartBuy-Notifier")
    ts = rec.headers["x-smartbuy-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    assert verify_webhook(SECRET, ts, rec.headers["x-smartbuy-signature"], rec.raw, now=time.time())
    assert rec.body == {"delivery_id": 777, "attempt": 2, **alert()}
    assert list(rec.body)[:2] == ["delivery_id", "attempt"]
    assert rec.raw == webhook_body(d)  # compact UTF-8 JSON, deterministic
    assert rec.raw == json.dumps(rec.body, separators=(",", ":"), ensure_ascii=False).encode()

    # a retry of the same delivery (new attempt) is deduplicated by the receiver
    again = run([delivery("webhook", url, SECRET, delivery_id=777, attempt=3)], settings)[777]
    assert again.outcome is Outcome.SENT
    assert inbox.unique("wh-basic") == 1 and inbox.duplicates("wh-basic") == 1 and inbox.received("wh-basic") == 2


def test_webhook_wrong_secret_is_rejected_by_receiver_and_retried(inbox, settings):
    url = inbox.webhook_url("wh-badsig", secret=SECRET)
    res = run([d := delivery("webhook", url, "not-the-secret")], settings)[d.delivery_id]
    assert res.outcome is Outcome.RETRY and res.status_code == 401
    assert inbox.rejected("wh-badsig") == 1 and inbox.unique("wh-badsig") == 0


def test_webhook_503_is_retry(inbox, settings):
    url = inbox.webhook_url("wh-503", secret=SECRET)
    inbox.fail_next("wh-503", 1, status=503)
    d1, d2 = delivery("webhook", url, SECRET), delivery("webhook", url, SECRET)
    res = run([d1], settings)
    assert res[d1.delivery_id].outcome is Outcome.RETRY
    assert res[d1.delivery_id].status_code == 503
    assert res[d1.delivery_id].error == "webhook answered HTTP 503"
    assert run([d2], settings)[d2.delivery_id].outcome is Outcome.SENT


def test_webhook_receiver_down_is_retry(inbox, settings):
    url = inbox.webhook_url("wh-down", secret=SECRET)
    inbox.down("wh-down")
    try:
        d = delivery("webhook", url, SECRET)
        assert run([d], settings)[d.delivery_id].outcome is Outcome.RETRY
    finally:
        inbox.up("wh-down")


def test_webhook_connection_refused_is_retry(settings):
    d = delivery("webhook", f"http://127.0.0.1:{free_port()}/hooks/nobody", SECRET)
    res = run([d], settings)[d.delivery_id]
    assert res.outcome is Outcome.RETRY and res.status_code is None
    assert res.error == "webhook: connection failed (Connection refused)"


def test_webhook_timeout_then_retry_is_deduplicated(inbox):
    """A receiver that accepts the request but answers too late: RETRY; the retry with the same
    Idempotency-Key is recognised as a duplicate once the first request completes."""
    url = inbox.webhook_url("wh-slow", secret=SECRET)
    inbox.hold_next("wh-slow", 1)
    d = delivery("webhook", url, SECRET)
    res = run([d], inbox.channel_settings(timeout_s=0.5))[d.delivery_id]
    assert res.outcome is Outcome.RETRY and res.error == "webhook: timed out"
    assert inbox.held("wh-slow") == 1 and inbox.received("wh-slow") == 1
    inbox.release("wh-slow")
    assert inbox.wait_for(lambda: inbox.unique("wh-slow") == 1, timeout=5)
    retry = Delivery(d.delivery_id, 2, d.channel_id, d.kind, d.target, d.secret, d.payload)
    assert run([retry], inbox.channel_settings())[d.delivery_id].outcome is Outcome.SENT
    assert inbox.unique("wh-slow") == 1 and inbox.duplicates("wh-slow") == 1


def test_malformed_targets_are_invalid_while_others_are_sent(inbox, settings):
    good_url = inbox.webhook_url("wh-mixed", secret=SECRET)
    good = [delivery("webhook", good_url, SECRET) for _ in range(5)]
    bad = {
        "not a url": "malformed URL: not an absolute http(s) URL",
        "ftp://x": "unsupported URL scheme (only http and https are allowed)",
        "http://": "malformed URL: no host",
        "https://exa mple.com/x": "malformed URL: contains whitespace or control characters",
        "http://bad_host$name/x": "malformed URL: bad host name",
        "http://user:pw@example.com/hook": "URLs with user:password@ are refused",
    }
    bad_deliveries = {delivery("webhook", t, SECRET).delivery_id: (t, e) for t, e in bad.items()}
    no_secret = delivery("webhook", good_url, None)
    all_d = good[:3] + [delivery("webhook", t, SECRET, delivery_id=i) for i, (t, _) in bad_deliveries.items()] + [no_secret] + good[3:]
    res = run(all_d, settings)
    for d in good:
        assert res[d.delivery_id].outcome is Outcome.SENT
    for i, (target, error) in bad_deliveries.items():
        assert res[i].outcome is Outcome.INVALID, target
        assert res[i].error == error
    assert res[no_secret.delivery_id].outcome is Outcome.INVALID
    assert res[no_secret.delivery_id].error == "webhook channel has no signing secret"
    assert inbox.unique("wh-mixed") == 5


def test_ssrf_private_targets_are_invalid(inbox):
    strict = ChannelSettings(allow_private_network=False, timeout_s=2.0)
    targets = [
        inbox.webhook_url("wh-ssrf", secret=SECRET),  # 127.0.0.1
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://0x7f.1/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
    ]
    ds = [delivery("webhook", t, SECRET) for t in targets]
    res = run(ds, strict)
    for d in ds:
        r = res[d.delivery_id]
        assert r.outcome is Outcome.INVALID, d.target
        assert r.error.startswith("target refused by the SSRF guard"), r.error
    assert inbox.received("wh-ssrf") == 0
    # metadata endpoints stay refused even when private networks are allowed
    meta = delivery("webhook", "http://169.254.169.254/latest/meta-data/", SECRET)
    r = run([meta], inbox.channel_settings())[meta.delivery_id]
    assert r.outcome is Outcome.INVALID and r.error == "target refused by the SSRF guard: a cloud metadata endpoint"


def test_redirect_is_refused(inbox, settings):
    url = inbox.webhook_url("wh-redirect", secret=SECRET)
    inbox.fail_next("wh-redirect", 1, status=307, location=inbox.webhook_url("wh-redirect-target"))
    d = delivery("webhook", url, SECRET)
    r = run([d], settings)[d.delivery_id]
    assert r.outcome is Outcome.RETRY and r.status_code == 307
    assert r.error == "webhook answered HTTP 307: redirect refused"
    assert inbox.received("wh-redirect-target") == 0


# --------------------------------------------------------------------------- e-mail


def _parts(msg):
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")  # SMTP line endings


def test_email_via_smtp(inbox, settings):
    before = len(inbox.mail)
    d = delivery("email", "Maria Silva <maria.silva@example.com.br>", delivery_id=4242)
    r = run([d], settings)[4242]
    assert r.outcome is Outcome.SENT and r.status_code == 250
    rec = inbox.mail[before]
    assert rec.rcpt_tos == ("maria.silva@example.com.br",)
    assert rec.mail_from == "alertas@smartbuy.local" and not rec.tls
    msg = rec.message
    assert msg["Subject"] == "SmartBuy: Queda de 15% - Notebook Dell <Inspiron> por R$ 3.400,00"
    assert msg["Message-ID"] == "<smartbuy-delivery-4242@smartbuy.local>"
    assert msg["X-SmartBuy-Idempotency-Key"] == "4242"
    assert msg["To"] == "Maria Silva <maria.silva@example.com.br>"
    assert msg["From"] == "SmartBuy <alertas@smartbuy.local>"
    assert msg["Content-Language"] == "pt-BR"
    text, html = _parts(msg)
    assert "Preço: R$ 3.400,00\n" in text
    assert "Frete: R$ 25,00\nTotal com frete: R$ 3.425,00\n" in text
    assert "Referência (mediana de 30 dias): R$ 4.000,00" in text
    assert "Risco de cilada: A - baixo risco (nota 88/100)" in text
    assert "<td>Notebook Dell &lt;Inspiron&gt;</td>" in html and "<Inspiron>" not in html


def test_email_digest(inbox, settings):
    before = len(inbox.mail)
    payload = {
        "kind": "digest",
        "household_id": 7,
        "count": 7,
        "items": [alert(), alert(alert_type="BACK_IN_STOCK", product_name="Air Fryer")],
        "window_start": "2026-11-27T02:00:00Z",
        "window_end": "2026-11-27T03:00:00Z",
    }
    d = delivery("email", "joao@example.com", payload=payload)
    assert run([d], settings)[d.delivery_id].outcome is Outcome.SENT
    msg = inbox.mail[before].message
    assert msg["Subject"] == "SmartBuy: 7 alertas na última hora"
    text, _ = _parts(msg)
    assert "- De volta ao estoque: Air Fryer por R$ 3.400,00 (Mega Tech)" in text
    assert "… e mais 5 alertas" in text


def test_email_malformed_addresses_and_payload_are_invalid(inbox, settings):
    bad = ["not an address", "a@", "@example.com", "a@@example.com", "joao@localhost", "x@example.com\r\nBcc: y@example.com", ""]
    ds = [delivery("email", t) for t in bad]
    bad_payload = delivery("email", "ok@example.com", payload=alert(price=None))
    before = len(inbox.mail)
    res = run(ds + [bad_payload], settings)
    for d in ds:
        assert res[d.delivery_id].outcome is Outcome.INVALID, d.target
        assert res[d.delivery_id].error == "malformed e-mail address"
    r = res[bad_payload.delivery_id]
    assert r.outcome is Outcome.INVALID and r.error == "invalid notification payload: field 'price' is missing"
    assert len(inbox.mail) == before


def test_email_recipient_refused(inbox, settings):
    inbox.smtp_reject("gone.user@example.org", 550)
    inbox.smtp_reject("full.box@example.org", 452)
    gone, full = delivery("email", "gone.user@example.org"), delivery("email", "full.box@example.org")
    res = run([gone, full], settings)
    assert res[gone.delivery_id].outcome is Outcome.INVALID and res[gone.delivery_id].status_code == 550
    assert res[full.delivery_id].outcome is Outcome.RETRY and res[full.delivery_id].status_code == 452
    for d in (gone, full):
        err = res[d.delivery_id].error
        assert "example.org" not in err and d.target.split("@")[0] not in err, err
        assert "Recipient address rejected" in err


def test_email_smtp_down_is_retry():
    s = ChannelSettings(smtp_host="127.0.0.1", smtp_port=free_port(), timeout_s=2.0)
    d = delivery("email", "a@example.com")
    r = run([d], s)[d.delivery_id]
    assert r.outcome is Outcome.RETRY and r.error == "SMTP: connection failed (Connection refused)"


def test_email_starttls_and_auth(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    # the client trusts the throw-away CA the standard way (OpenSSL reads SSL_CERT_FILE)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with LocalInbox(smtp_tls_context=server_ctx, smtp_require_starttls=True, smtp_credentials=("sb-user", "sb-pass")) as box:
        ok = box.channel_settings(smtp_starttls=True, smtp_username="sb-user", smtp_password="sb-pass")
        d = delivery("email", "tls@example.com")
        r = run([d], ok)[d.delivery_id]
        assert r.outcome is Outcome.SENT, r.error
        [rec] = box.mail
        assert rec.tls and rec.authenticated
        assert rec.message["Message-ID"] == f"<smartbuy-delivery-{d.delivery_id}@smartbuy.local>"

        wrong = box.channel_settings(smtp_starttls=True, smtp_username="sb-user", smtp_password="wrong-pass")
        d2 = delivery("email", "tls@example.com")
        r2 = run([d2], wrong)[d2.delivery_id]
        assert r2.outcome is Outcome.RETRY and r2.error.startswith("SMTP authentication failed")
        assert "wrong-pass" not in r2.error and "sb-user" not in r2.error

        plain = box.channel_settings()  # no STARTTLS although the server requires it
        d3 = delivery("email", "tls@example.com")
        r3 = run([d3], plain)[d3.delivery_id]
        assert r3.outcome is Outcome.RETRY
        assert len(box.mail) == 1


# --------------------------------------------------------------------------- Apprise


def test_apprise_json_to_inbox(inbox, settings):
    d = delivery("apprise", inbox.apprise_url("ap-json"))
    r = run([d], settings)[d.delivery_id]
    assert r.outcome is Outcome.SENT, r.error
    [rec] = inbox.apprise("ap-json")
    assert rec.title == "Queda de 15%"
    assert rec.message == (
        "Notebook Dell <Inspiron> por R$ 3.400,00 (Mega Tech)\n"
        "Total com frete: R$ 3.425,00\n"
        "Mediana de 30 dias: R$ 4.000,00\n"
        "Risco de cilada: A - baixo risco (nota 88/100)\n"
        "https://megatech.example/p/notebook"
    )
    assert rec.body["version"] == "1.0" and rec.body["type"] == "info"


def test_apprise_invalid_and_failing_targets(inbox, settings):
    unknown = delivery("apprise", "nosuchscheme://token@host/x")
    garbage = delivery("apprise", "not a url at all")
    two = delivery("apprise", inbox.apprise_url("ap-a") + " " + inbox.apprise_url("ap-b"))
    inbox.fail_next("ap-fail", 1, status=500)
    failing = delivery("apprise", inbox.apprise_url("ap-fail"))
    res = run([unknown, garbage, two, failing], settings)
    assert res[unknown.delivery_id].outcome is Outcome.INVALID
    assert res[unknown.delivery_id].error == "apprise URL not understood"
    assert res[garbage.delivery_id].outcome is Outcome.INVALID
    assert res[two.delivery_id].outcome is Outcome.INVALID
    assert res[two.delivery_id].error == "apprise target must be exactly one URL"
    assert res[failing.delivery_id].outcome is Outcome.RETRY
    assert inbox.apprise("ap-a") == [] and inbox.received("ap-fail") == 1


def test_apprise_private_host_refused_without_allow_private_network(inbox):
    d = delivery("apprise", inbox.apprise_url("ap-ssrf"))
    r = run([d], ChannelSettings(timeout_s=2.0))[d.delivery_id]
    assert r.outcome is Outcome.INVALID
    assert r.error == "target refused by the SSRF guard: a non-public (private, loopback or reserved) address"
    assert inbox.received("ap-ssrf") == 0


# --------------------------------------------------------------------------- Web Push


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture()
def push_settings(inbox, vapid_key) -> ChannelSettings:
    pem = vapid_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return inbox.channel_settings(vapid_private_key=pem, vapid_subject="mailto:ops@smartbuy.test", timeout_s=5.0)


def browser_subscription(endpoint: str) -> tuple[str, ec.EllipticCurvePrivateKey, bytes]:
    """What a browser's PushManager.subscribe() hands the site: endpoint + p256dh + auth."""
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    sub = {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": b64u(pub), "auth": b64u(auth)}}
    return json.dumps(sub), priv, auth


def test_webpush_encrypted_and_vapid_signed(inbox, push_settings, vapid_key):
    endpoint = inbox.push_endpoint("wp-ok")
    target, browser_key, auth = browser_subscription(endpoint)
    d = delivery("webpush", target)
    r = run([d], push_settings)[d.delivery_id]
    assert r.outcome is Outcome.SENT and r.status_code == 201, r.error
    [rec] = inbox.pushes("wp-ok")
    assert rec.headers["ttl"] == "86400"
    assert rec.headers["urgency"] == "high"
    assert rec.headers["topic"] == "alert-41"
    assert rec.headers["content-encoding"] == "aes128gcm"
    assert rec.body_length > 0

    plain = http_ece.decrypt(rec.body, private_key=browser_key, auth_secret=auth, version="aes128gcm")
    doc = json.loads(plain)
    assert doc["title"] == "Queda de 15%"
    assert doc["body"].startswith("Notebook Dell <Inspiron> por R$ 3.400,00 (Mega Tech)\n")
    assert doc["url"] == "https://megatech.example/p/notebook"
    assert doc["delivery_id"] == d.delivery_id

    # VAPID (RFC 8292): "vapid t=<ES256 JWT>, k=<public key>", audience = the endpoint's origin
    authz = rec.headers["authorization"]
    assert authz.startswith("vapid t=")
    token = authz.split("t=", 1)[1].split(",", 1)[0].strip()
    head, claims_b64, sig_b64 = token.split(".")
    claims = json.loads(b64u_decode(claims_b64))
    assert claims["aud"] == inbox.base_url and claims["sub"] == "mailto:ops@smartbuy.test"
    sig = b64u_decode(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    vapid_key.public_key().verify(der, f"{head}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("status, outcome", [(410, Outcome.GONE), (404, Outcome.GONE), (429, Outcome.RETRY), (503, Outcome.RETRY)])
def test_webpush_service_statuses(inbox, push_settings, status, outcome):
    name = f"wp-{status}"
    inbox.push_status(name, status)
    target, _, _ = browser_subscription(inbox.push_endpoint(name))
    d = delivery("webpush", target)
    r = run([d], push_settings)[d.delivery_id]
    assert r.outcome is outcome and r.status_code == status
    assert inbox.received(name) == 1


def test_webpush_invalid_subscription_and_missing_vapid(inbox, push_settings):
    target, _, _ = browser_subscription(inbox.push_endpoint("wp-misc"))
    sub = json.loads(target)
    bad = {
        "{not json": "malformed web push subscription (not JSON)",
        json.dumps({"endpoint": sub["endpoint"]}): "malformed web push subscription (no keys)",
        json.dumps({**sub, "keys": {"p256dh": "AAAA", "auth": sub["keys"]["auth"]}}): "malformed web push subscription (bad p256dh key)",
        json.dumps({**sub, "endpoint": "ftp://push.example/x"}): "unsupported push endpoint URL scheme (only http and https are allowed)",
    }
    ds = {delivery("webpush", t).delivery_id: e for t, e in bad.items()}
    res = run([delivery("webpush", t, delivery_id=i) for i, t in zip(ds, bad)], push_settings)
    for i, error in ds.items():
        assert res[i].outcome is Outcome.INVALID and res[i].error == error
    d = delivery("webpush", target)
    r = run([d], inbox.channel_settings())[d.delivery_id]  # no VAPID key configured
    assert r.outcome is Outcome.RETRY and r.error == "web push is not configured (VAPID key missing)"
    assert inbox.received("wp-misc") == 0


# --------------------------------------------------------------------------- batch behaviour


def test_errors_never_leak_targets_or_secrets(inbox, push_settings):
    inbox.fail_next("leak-hook", 1, status=500)
    inbox.smtp_reject("leaky.person@secret-domain.example", 550)
    inbox.push_status("leak-push", 410)
    refused_port = free_port()
    sub_target, _, _ = browser_subscription(inbox.push_endpoint("leak-push"))
    ds = [
        delivery("webhook", inbox.webhook_url("leak-hook", secret=SECRET), SECRET),
        delivery("webhook", f"http://127.0.0.1:{refused_port}/hooks/leak?token=tok-123456", SECRET),
        delivery("webhook", "ftp://secret-host.example/leak", SECRET),
        delivery("webhook", "http://metadata.google.internal/leak", SECRET),
        delivery("webhook", "not a url but secret-ish", SECRET),
        delivery("email", "leaky.person@secret-domain.example"),
        delivery("email", "broken address secret-domain.example"),
        delivery("apprise", "nosuchscheme://tok-abcdef@secret-host.example/x"),
        delivery("apprise", inbox.apprise_url("leak-apprise") + "?token=zzz-secret", None, alert(price="bad")),
        delivery("webpush", sub_target),
        delivery("webpush", sub_target.replace("p256dh", "p256")),
        delivery("smoke-signal", "ssh://secret-host.example"),
    ]
    res = run(ds, push_settings)
    errors = [res[d.delivery_id].error for d in ds]
    assert all(errors), errors  # every one of them failed with a message
    for d, err in zip(ds, errors):
        assert d.target not in err and SECRET not in err, err
        for fragment in ("secret-host", "secret-domain", "leaky.person", "tok-", "zzz-secret", str(refused_port), "leak-hook", "leak-push"):
            assert fragment not in err, (d.kind, err)
    assert res[ds[-1].delivery_id].outcome is Outcome.INVALID
    assert "smoke-signal" not in repr(ds[0]) and SECRET not in repr(ds[0]) and "127.0.0.1" not in repr(ds[0])


def test_on_results_called_in_groups_in_callers_thread(inbox, settings):
    url = inbox.webhook_url("wh-groups", secret=SECRET)
    ds = [delivery("webhook", url, SECRET) for _ in range(250)]
    calls: list[tuple[int, int]] = []

    def on_results(group: list[DeliveryResult]) -> None:
        calls.append((threading.get_ident(), len(group)))

    counts = deliver_all(ds, settings, on_results=on_results, flush_every=40, flush_interval_s=10)
    assert counts == {Outcome.SENT: 250}
    assert {t for t, _ in calls} == {threading.get_ident()}
    sizes = [n for _, n in calls]
    assert sum(sizes) == 250 and max(sizes) <= 40 and len(sizes) >= 7
    assert inbox.unique("wh-groups") == 250


def test_on_results_failure_stops_the_run(inbox, settings):
    url = inbox.webhook_url("wh-abort", secret=SECRET)
    ds = [delivery("webhook", url, SECRET) for _ in range(300)]

    def boom(group):
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        deliver_all(ds, ChannelSettings(**{**settings.__dict__, "concurrency": 4}), on_results=boom, flush_every=1)
    time.sleep(0.2)
    assert inbox.unique("wh-abort") < 300


def test_concurrency_is_bounded(inbox):
    url = inbox.webhook_url("wh-bound", secret=SECRET)
    inbox.hold_next("wh-bound", 1000)
    ds = [delivery("webhook", url, SECRET) for _ in range(30)]
    done = threading.Event()
    t = threading.Thread(target=lambda: (deliver_all(ds, inbox.channel_settings(concurrency=8), on_results=lambda g: None), done.set()))
    t.start()
    try:
        assert inbox.wait_for(lambda: inbox.held("wh-bound") == 8, timeout=5)
        time.sleep(0.2)
        assert inbox.held("wh-bound") == 8  # never more than settings.concurrency in flight
    finally:
        inbox.release("wh-bound")
        t.join(30)
    assert done.is_set() and inbox.unique("wh-bound") == 30


def test_2000_webhooks(inbox, settings):
    url = inbox.webhook_url("wh-bulk", secret=SECRET)
    ds = [delivery("webhook", url, SECRET) for _ in range(2000)]
    t0 = time.perf_counter()
    counts = deliver_all(ds, settings, on_results=lambda g: None)
    elapsed = time.perf_counter() - t0
    assert counts == {Outcome.SENT: 2000}
    assert inbox.unique("wh-bulk") == 2000 and inbox.duplicates("wh-bulk") == 0
    print(f"\n2000 signed webhooks delivered in {elapsed:.2f} s: {2000 / elapsed:,.0f}/s (concurrency {settings.concurrency})")


def test_inbox_stops_cleanly():
    before = {t.ident for t in threading.enumerate()}
    with LocalInbox() as box:
        url = box.webhook_url("x")
        box.hold_next("x", 1)
        ds = [delivery("webhook", url, "s")]
        deliver_all(ds, box.channel_settings(timeout_s=0.3), on_results=lambda g: None)
        assert box.held("x") == 1
    time.sleep(0.1)
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == [], leftover
