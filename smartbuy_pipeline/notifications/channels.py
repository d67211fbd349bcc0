"""Notification senders: webhook, e-mail (SMTP), Apprise, Web Push. No database here.

The dispatcher hands `deliver_all` a batch of `Delivery` rows and gets one `DeliveryResult` per
delivery back (in groups, through `on_results`, in the caller's thread) plus counts per outcome:

    counts = deliver_all(deliveries, ChannelSettings(...), on_results=store_results)

Outcomes: SENT; RETRY (transient: timeouts, connection errors, any non-2xx from a webhook,
SMTP 4xx/5xx other than a refused mailbox, push 429/5xx, missing VAPID key); INVALID (the target
or the payload can never work: malformed URL / address / subscription, unsupported scheme, SSRF
refused, webhook without a secret, Apprise URL not understood, PayloadError; no retry); GONE
(Web Push 404/410: disable the channel).

Errors are one line of at most 300 chars and never contain the target, the webhook secret or the
SMTP credentials: messages are built from status codes and exception *types* (never from an
exception's text, which may quote URLs), SMTP server replies are redacted, and every error is
scrubbed of the target/secret/credentials again before it is returned. This module never logs a
target. (Apprise logs through the "apprise" logger: see `_send_apprise`.)

Execution: `deliver_all` runs its own event loop in a worker thread (so it works from sync code
and from inside another event loop) with `settings.concurrency` worker tasks; blocking libraries
(smtplib, pywebpush/requests, Apprise's URL parsing) run in a bounded thread pool. Results flow
back through a queue and the caller's thread calls `on_results` every `flush_every` results or
`flush_interval_s` seconds, so a kill loses at most one group of unrecorded results (those
deliveries are sent again later with the same Idempotency-Key / Message-ID).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import queue
import re
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from smartbuy_pipeline.acquisition.ssrf import GuardedResolver, HostResolutionError, SsrfGuard, SsrfRefused
from smartbuy_pipeline.domain.notifications import PayloadError, render_email, render_short, sign_webhook

__all__ = [
    "ChannelSettings",
    "Delivery",
    "DeliveryResult",
    "Outcome",
    "USER_AGENT",
    "deliver_all",
    "webhook_body",
]

log = logging.getLogger(__name__)

USER_AGENT = "SmartBuy-Notifier/1.0"
MAX_ERROR_CHARS = 300
PUSH_TTL_S = 86_400
PUSH_MAX_PLAINTEXT = 3_800  # aes128gcm record limit is 4096 bytes incl. 103 bytes of overhead
SMTP_MAX_CONNECTIONS = 10  # SMTP connections in flight (servers throttle per client)
BLOCKING_THREADS = 32
KINDS = ("webhook", "email", "apprise", "webpush")
_HOST_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?\.?$")
_DNS_NAME_RE = re.compile(r"^(?:[a-z0-9-]{1,63}\.)+[a-z]{2,63}\.?$")
_TOPIC_BAD = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ChannelSettings:
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None  # secret
    mail_from: str = "SmartBuy <alertas@smartbuy.local>"
    vapid_private_key: str | None = None  # secret (PEM, or base64url raw/DER as pywebpush takes)
    vapid_subject: str = "mailto:ops@smartbuy.local"
    allow_private_network: bool = False  # webhook/apprise/push targets on private addresses
    timeout_s: float = 10.0
    concurrency: int = 64  # deliveries in flight at once

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (
            f"ChannelSettings(smtp_host={self.smtp_host!r}, smtp_port={self.smtp_port}, "
            f"smtp_starttls={self.smtp_starttls}, smtp_username={'***' if self.smtp_username else None}, "
            f"smtp_password={'***' if self.smtp_password else None}, mail_from={self.mail_from!r}, "
            f"vapid_private_key={'***' if self.vapid_private_key else None}, "
            f"vapid_subject={self.vapid_subject!r}, allow_private_network={self.allow_private_network}, "
            f"timeout_s={self.timeout_s}, concurrency={self.concurrency})"
        )


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    attempt: int
    channel_id: int
    kind: str  # 'webhook' | 'email' | 'apprise' | 'webpush'
    target: str  # sensitive: URL, e-mail address, Apprise URL, Web Push subscription JSON
    secret: str | None  # sensitive: webhook HMAC secret
    payload: dict
    idempotency_key: str | None = None  # default: the delivery id (ops notices use the run id)

    @property
    def key(self) -> str:
        return self.idempotency_key or str(self.delivery_id)

    def __repr__(self) -> str:
        return (
            f"Delivery(delivery_id={self.delivery_id}, attempt={self.attempt}, "
            f"channel_id={self.channel_id}, kind={self.kind!r}, target=***, "
            f"secret={'***' if self.secret else None}, payload=<{len(self.payload or {})} keys>)"
        )


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    INVALID = "invalid"
    GONE = "gone"


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    channel_id: int
    outcome: Outcome
    error: str | None  # one line, <= 300 chars, never the target, the secret or credentials
    status_code: int | None
    started_at: datetime
    finished_at: datetime  # UTC


@dataclass(slots=True)
class _Res:
    outcome: Outcome
    error: str | None = None
    status: int | None = None




def _retry(error: str, status: int | None = None) -> _Res:
    return _Res(Outcome.RETRY, error, status)


def _invalid(error: str, status: int | None = None) -> _Res:
    return _Res(Outcome.INVALID, error, status)


# --------------------------------------------------------------------------- helpers


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def webhook_body(delivery: Delivery) -> bytes:
    """The exact webhook request body: {"delivery_id", "attempt", **payload}, compact UTF-8 JSON
    (payload keys in their given order; "delivery_id"/"attempt" in a payload are overridden)."""
    doc: dict[str, Any] = {"delivery_id": delivery.delivery_id, "attempt": delivery.attempt}
    for k, v in (delivery.payload or {}).items():
        if k not in doc:
            doc[k] = v
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False).encode()


def _one_line(text: str, secrets: Sequence[str | None] = ()) -> str:
    out = " ".join(str(text).split())
    for s in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        out = re.sub(re.escape(s), "***", out, flags=re.IGNORECASE)
    if len(out) > MAX_ERROR_CHARS:
        out = out[: MAX_ERROR_CHARS - 1] + "…"
    return out


def _exc_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _network_error(exc: BaseException, what: str) -> _Res:
    """Classify a transport exception without ever quoting its text (which may hold the URL)."""
    chain = _exc_chain(exc)
    if any(isinstance(e, SsrfRefused) for e in chain):  # the guarded resolver refused at connect
        return _invalid(f"{what}: target refused by the SSRF guard (resolves to a non-public address)")
    if any(isinstance(e, (HostResolutionError, socket.gaierror)) for e in chain):
        return _retry(f"{what}: cannot resolve the host")
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return _retry(f"{what}: TLS error ({type(e).__name__})")
    for e in chain:
        if isinstance(e, OSError) and not isinstance(e, TimeoutError) and e.errno:
            # os.strerror, not e.strerror: asyncio puts the address into the latter
            return _retry(f"{what}: connection failed ({os.strerror(e.errno)})")
    for e in chain:
        if isinstance(e, aiohttp.ServerTimeoutError):
            return _retry(f"{what}: timed out")
        if isinstance(e, aiohttp.ClientError):
            return _retry(f"{what}: connection failed ({type(e).__name__})")
    if any(isinstance(e, (TimeoutError, httpx.TimeoutException)) for e in chain):
        return _retry(f"{what}: timed out")
    return _retry(f"{what}: connection failed ({type(exc).__name__})")


def _ssrf_message(exc: SsrfRefused) -> str:
    d = exc.detail
    if "metadata" in d:
        why = "a cloud metadata endpoint"
    elif "internal service" in d:
        why = "an internal host name"
    elif "not a public" in d or "non-public" in d:
        why = "a non-public (private, loopback or reserved) address"
    elif "scheme" in d:
        return "unsupported URL scheme (only http and https are allowed)"
    elif "no host" in d:
        return "malformed URL: no host"
    elif "credentials" in d:
        return "URLs with user:password@ are refused"
    else:
        return "malformed URL"
    return f"target refused by the SSRF guard: {why}"


def _url_problem(url: str) -> str | None:
    """Why `url` is not a usable http(s) URL, or None. Never quotes the URL."""
    if not isinstance(url, str) or not url.strip():
        return "malformed URL: empty"
    if len(url) > 2048:
        return "malformed URL: longer than 2048 characters"
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return "malformed URL"
    if not parts.scheme or "://" not in url:
        return "malformed URL: not an absolute http(s) URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "unsupported URL scheme (only http and https are allowed)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "malformed URL: contains whitespace or control characters"
    if not host:
        return "malformed URL: no host"
    if port == 0:
        return "malformed URL: port 0"
    if parts.username is not None or parts.password is not None:
        return "URLs with user:password@ are refused"
    if ":" in host:  # IPv6 literal
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return "malformed URL: bad host name"
    if not _HOST_RE.match(ascii_host.lower()):
        return "malformed URL: bad host name"
    try:
        httpx.URL(url)
    except Exception:  # noqa: BLE001 - httpx.InvalidURL and friends
        return "malformed URL"
    return None


async def _check_target_url(run: _Run, url: str) -> _Res | None:
    """None if `url` may be posted to, else the INVALID/RETRY result. Verdicts that do not depend
    on DNS failing are cached for the run (many deliveries share one channel's URL)."""
    if url in run.url_verdicts:
        cached = run.url_verdicts[url]
        return None if cached is None else _Res(cached.outcome, cached.error, cached.status)
    problem = _url_problem(url)
    res: _Res | None
    if problem is not None:
        res = _invalid(problem)
    else:
        try:
            await run.guard.check_url(url, allow_private_network=run.settings.allow_private_network)
            res = None
        except SsrfRefused as exc:
            res = _invalid(_ssrf_message(exc))
        except HostResolutionError:
            return _retry("cannot resolve the host")  # not cached: DNS may recover
    if len(run.url_verdicts) < 100_000:
        run.url_verdicts[url] = res
    return None if res is None else _Res(res.outcome, res.error, res.status)


# --------------------------------------------------------------------------- run state


class _Run:
    def __init__(self, settings: ChannelSettings) -> None:
        self.settings = settings
        self.guard = SsrfGuard()
        self.url_verdicts: dict[str, _Res | None] = {}
        self._client: httpx.AsyncClient | None = None
        self.smtp_slots = asyncio.Semaphore(max(1, min(settings.concurrency, SMTP_MAX_CONNECTIONS)))
        self.blocking = ThreadPoolExecutor(
            max_workers=max(1, min(settings.concurrency, BLOCKING_THREADS)), thread_name_prefix="smartbuy-notify"
        )
        self._vapid: Any = None
        self._vapid_error: str | None = None
        self._vapid_loaded = False

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=max(1, s.concurrency),
                limit_per_host=0,
                resolver=None if s.allow_private_network else GuardedResolver(self.guard),
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
            self._client = HttpxAiohttpClient(
                transport=AiohttpTransport(client=session, trust_env=False),
                timeout=httpx.Timeout(s.timeout_s),
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.blocking, fn, *args)

    def vapid(self) -> tuple[Any, str | None]:
        """The parsed VAPID key (once per run), or an error."""
        if not self._vapid_loaded:
            self._vapid_loaded = True
            key = self.settings.vapid_private_key
            if not key:
                self._vapid_error = "web push is not configured (VAPID key missing)"
            else:
                try:
                    from cryptography.hazmat.primitives.serialization import load_pem_private_key
                    from py_vapid import Vapid

                    if "-----BEGIN" in key:
                        self._vapid = Vapid(private_key=load_pem_private_key(key.encode(), password=None))
                    else:
                        self._vapid = Vapid.from_string(private_key=key.strip())
                except Exception as exc:  # noqa: BLE001 - never quote the key
                    self._vapid_error = f"web push VAPID key cannot be loaded ({type(exc).__name__})"
        return self._vapid, self._vapid_error

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.blocking.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- webhook


async def _send_webhook(run: _Run, d: Delivery) -> _Res:
    if not d.secret:
        return _invalid("webhook channel has no signing secret")
    bad = await _check_target_url(run, d.target)
    if bad is not None:
        return bad
    try:
        body = webhook_body(d)
    except (TypeError, ValueError) as exc:
        return _invalid(f"payload is not JSON-serialisable ({type(exc).__name__})")
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": d.key,
        "X-SmartBuy-Delivery": str(d.delivery_id),
        "X-SmartBuy-Attempt": str(d.attempt),
        "X-SmartBuy-Timestamp": str(ts),
        "X-SmartBuy-Signature": sign_webhook(d.secret, ts, body),
    }
    client = run.client
    try:
        async with asyncio.timeout(run.settings.timeout_s):
            request = client.build_request("POST", d.target, content=body, headers=headers)
            resp = await client.send(request, stream=True)
            status = resp.status_code
            await resp.aclose()  # the receiver's body is never read
    except SsrfRefused as exc:
        return _invalid(_ssrf_message(exc))
    except Exception as exc:  # noqa: BLE001 - classified, never raised
        return _network_error(exc, "webhook")
    if 200 <= status < 300:
        return _Res(Outcome.SENT, None, status)
    if 300 <= status < 400:
        return _retry(f"webhook answered HTTP {status}: redirect refused", status)
    return _retry(f"webhook answered HTTP {status}", status)


# --------------------------------------------------------------------------- e-mail


def _parse_address(target: str) -> Address | None:
    if not isinstance(target, str) or not target.strip() or len(target) > 320:
        return None
    if any(c in target for c in "\r\n\0\t"):
        return None
    try:
        name, addr = parseaddr(target, strict=True)  # type: ignore[call-arg]
    except TypeError:  # Python without the strict= parameter
        name, addr = parseaddr(target)
    if not addr or addr.count("@") != 1:
        return None
    try:
        a = Address(display_name=name or "", addr_spec=addr)
    except (ValueError, HeaderParseError, IndexError, TypeError):
        return None
    if not a.username or not a.domain or a.addr_spec != addr:
        return None
    domain = a.domain.rstrip(".")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    if "." not in ascii_domain or not _DNS_NAME_RE.match(ascii_domain.lower()):
        return None
    return a


def _smtp_text(reply: bytes | str | Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def _smtp_send(settings: ChannelSettings, msg: EmailMessage, rcpt: str) -> _Res:
    """Blocking: one SMTP session, one message. Runs in the run's thread pool."""
    s = settings
    try:
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s) as smtp:
            smtp.ehlo()
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            from_addr = parseaddr(s.mail_from)[1] or s.mail_from
            smtp.send_message(msg, from_addr=from_addr, to_addrs=[rcpt])
        return _Res(Outcome.SENT, None, 250)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        text = f"SMTP {code} on RCPT: {_smtp_text(reply)}"
        if code in (550, 551, 553):
            return _invalid(f"mailbox unusable: {text}", code)
        return _retry(text, code)
    except smtplib.SMTPAuthenticationError as exc:
        return _retry(f"SMTP authentication failed ({exc.smtp_code})", exc.smtp_code)
    except smtplib.SMTPSenderRefused as exc:
        return _retry(f"SMTP {exc.smtp_code} on MAIL FROM: {_smtp_text(exc.smtp_error)}", exc.smtp_code)
    except smtplib.SMTPNotSupportedError:
        if s.smtp_starttls:
            return _retry("SMTP server does not support STARTTLS (or SMTPUTF8 for this address)")
        return _invalid("address needs SMTPUTF8, which the SMTP server does not support")
    except smtplib.SMTPResponseException as exc:  # SMTPDataError, SMTPHeloError, SMTPConnectError, ...
        return _retry(f"SMTP {exc.smtp_code}: {_smtp_text(exc.smtp_error)}", exc.smtp_code)
    except smtplib.SMTPServerDisconnected:
        return _retry("SMTP server disconnected")
    except (smtplib.SMTPException, OSError) as exc:
        return _network_error(exc, "SMTP")


async def _send_email(run: _Run, d: Delivery) -> _Res:
    addr = _parse_address(d.target)
    if addr is None:
        return _invalid("malformed e-mail address")
    content = render_email(d.payload)  # PayloadError -> INVALID in _deliver_one
    s = run.settings
    msg = EmailMessage()
    try:
        msg["Subject"] = content.subject
        msg["From"] = s.mail_from
        msg["To"] = addr
    except (ValueError, HeaderParseError, IndexError) as exc:
        return _invalid(f"cannot build the message headers ({type(exc).__name__})")
    msg["Date"] = format_datetime(datetime.now(UTC), usegmt=True)
    msg["Message-ID"] = (f"<smartbuy-{d.idempotency_key}@smartbuy.local>" if d.idempotency_key
                         else f"<smartbuy-delivery-{d.delivery_id}@smartbuy.local>")
    msg["X-SmartBuy-Idempotency-Key"] = d.key
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(content.text)
    msg.add_alternative(content.html, subtype="html")
    msg["Content-Language"] = "pt-BR"  # after add_alternative, which moves Content-* headers to the part
    async with run.smtp_slots:
        res = await run.run_blocking(_smtp_send, s, msg, addr.addr_spec)
    if res.error:
        res.error = _one_line(res.error, [addr.addr_spec, addr.username, d.target, s.smtp_username, s.smtp_password])
    return res


# --------------------------------------------------------------------------- Apprise


_apprise_log_checked = False


def _quiet_apprise_logging() -> None:
    """Apprise logs through the "apprise" logger: at DEBUG full service URLs with their tokens
    (e.g. a Telegram bot token in the POST URL) and the message; at INFO "Notifying 1
    service(s)"; at WARNING failures naming hosts or chat ids ("... sending Telegram:987654
    notification", "... to <host>"); at ERROR unparseable URLs, only partly masked
    ("nosuchscheme://tok-abc@s...e/x"). Python's last-resort handler would print the WARNING+
    ones to stderr. Unless the application configured that logger's level itself, silence it
    (CRITICAL) so no target reaches a log."""
    global _apprise_log_checked
    if not _apprise_log_checked:
        _apprise_log_checked = True
        apprise_log = logging.getLogger("apprise")
        if apprise_log.level == logging.NOTSET:
            apprise_log.setLevel(logging.CRITICAL)


def _apprise_build(target: str) -> tuple[Any, str | None]:
    """Blocking (first use imports Apprise's plugins): an Apprise object with exactly one service."""
    _quiet_apprise_logging()
    import apprise

    a = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))
    if not isinstance(target, str) or any(c in target for c in "\r\n\0") or not a.add(target):
        return None, "apprise URL not understood"
    if len(a) != 1:
        return None, "apprise target must be exactly one URL"
    return a, None


async def _send_apprise(run: _Run, d: Delivery) -> _Res:
    """One Apprise service URL. Its host (when the plugin has one) is SSRF-checked by name and,
    for DNS names, by resolution; Apprise then connects itself (requests), so unlike webhooks
    there is a small DNS-rebinding window. See `_quiet_apprise_logging` for Apprise's logs."""
    content = render_short(d.payload)
    a, err = await run.run_blocking(_apprise_build, d.target)
    if err is not None:
        return _invalid(err)
    s = run.settings
    for svc in a:
        host = getattr(svc, "host", None)
        if not isinstance(host, str) or not host:
            continue
        try:
            run.guard.check_host_name(host, allow_private_network=s.allow_private_network)
            h = host.strip("[]").rstrip(".").lower()
            if not s.allow_private_network and _DNS_NAME_RE.match(h):
                run.guard.check_addresses(h, await run.guard.resolve(h))
        except SsrfRefused as exc:
            return _invalid(_ssrf_message(exc))
        except HostResolutionError:
            return _retry("apprise: cannot resolve the host")
    body = content.body + (f"\n{content.url}" if content.url else "")
    try:
        result = await a.async_notify(body=body, title=content.title, timeout=s.timeout_s)
    except Exception as exc:  # noqa: BLE001
        return _retry(f"apprise notification failed ({type(exc).__name__})")
    if bool(result):
        return _Res(Outcome.SENT)
    return _retry("apprise notification failed")


# --------------------------------------------------------------------------- Web Push


def _b64url(s: Any) -> bytes | None:
    if not isinstance(s, str) or not s or len(s) > 256:
        return None
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None


def _parse_subscription(target: str) -> tuple[dict | None, str | None]:
    try:
        sub = json.loads(target)
    except (TypeError, ValueError):
        return None, "malformed web push subscription (not JSON)"
    if not isinstance(sub, dict):
        return None, "malformed web push subscription (not an object)"
    endpoint = sub.get("endpoint")
    keys = sub.get("keys")
    if not isinstance(endpoint, str) or not endpoint:
        return None, "malformed web push subscription (no endpoint)"
    if not isinstance(keys, dict):
        return None, "malformed web push subscription (no keys)"
    p256dh, auth = _b64url(keys.get("p256dh")), _b64url(keys.get("auth"))
    if p256dh is None or len(p256dh) != 65 or p256dh[0] != 4:
        return None, "malformed web push subscription (bad p256dh key)"
    if auth is None or len(auth) < 16:
        return None, "malformed web push subscription (bad auth secret)"
    return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}, None


def _push_topic(payload: dict) -> str:
    if payload.get("kind") == "digest":
        raw = f"digest-{payload.get('household_id', '')}"
    else:
        raw = f"alert-{payload.get('alert_id', '')}"
    return _TOPIC_BAD.sub("", raw)[:32] or "smartbuy"


def _push_data(d: Delivery) -> str:
    c = render_short(d.payload)
    doc = {"title": c.title, "body": c.body, "url": c.url, "kind": d.payload.get("kind"), "delivery_id": d.delivery_id}
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    while len(data.encode()) > PUSH_MAX_PLAINTEXT and doc["body"]:
        doc["body"] = doc["body"][: max(0, len(doc["body"]) - 200)].rstrip() + "…"
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return data


def _webpush_send(settings: ChannelSettings, vapid: Any, sub: dict, data: str, topic: str) -> _Res:
    """Blocking: encrypt (aes128gcm), sign VAPID, POST. Runs in the run's thread pool."""
    import requests
    from pywebpush import WebPushException, webpush

    session = requests.Session()
    session.trust_env = False
    session.max_redirects = 0  # a redirect raises TooManyRedirects: never followed
    try:
        resp = webpush(
            sub,
            data=data,
            vapid_private_key=vapid,
            vapid_claims={"sub": settings.vapid_subject},
            ttl=PUSH_TTL_S,
            headers={"Urgency": "high", "Topic": topic},
            timeout=settings.timeout_s,
            requests_session=session,
        )
        status = getattr(resp, "status_code", None)
        return _Res(Outcome.SENT, None, status)
    except WebPushException as exc:
        status = getattr(exc.response, "status_code", None) if exc.response is not None else None
        if status in (404, 410):
            return _Res(Outcome.GONE, f"push service answered HTTP {status}: subscription gone", status)
        if status is None:
            return _retry("web push failed (no response)")
        if 300 <= status < 400:
            return _retry(f"push service answered HTTP {status}: redirect refused", status)
        return _retry(f"push service answered HTTP {status}", status)
    except requests.TooManyRedirects:
        return _retry("push service redirected: redirect refused")
    except requests.Timeout:
        return _retry("web push: timed out")
    except (requests.RequestException, OSError) as exc:
        return _network_error(exc, "web push")
    finally:
        session.close()


async def _send_webpush(run: _Run, d: Delivery) -> _Res:
    sub, err = _parse_subscription(d.target)
    if err is not None:
        return _invalid(err)
    assert sub is not None
    bad = await _check_target_url(run, sub["endpoint"])
    if bad is not None:
        bad.error = (bad.error or "").replace("URL", "push endpoint URL", 1)
        return bad
    data = _push_data(d)  # PayloadError -> INVALID
    vapid, verr = run.vapid()
    if verr is not None:
        return _retry(verr)
    return await run.run_blocking(_webpush_send, run.settings, vapid, sub, data, _push_topic(d.payload))


# --------------------------------------------------------------------------- dispatch

_SENDERS = {"webhook": _send_webhook, "email": _send_email, "apprise": _send_apprise, "webpush": _send_webpush}


async def _deliver_one(run: _Run, d: Delivery) -> DeliveryResult:
    started = datetime.now(UTC)
    sender = _SENDERS.get(d.kind)
    try:
        if sender is None:
            res = _invalid(f"unknown channel kind {str(d.kind)[:20]!r}")
        elif not isinstance(d.payload, dict):
            res = _invalid("payload is not a JSON object")
        else:
            res = await sender(run, d)
    except PayloadError as exc:
        res = _invalid(str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad delivery never stops the batch
        log.warning("delivery %s (%s) failed unexpectedly: %s", d.delivery_id, d.kind, type(exc).__name__)
        res = _retry(f"internal error ({type(exc).__name__})")
    error = None
    if res.error is not None:
        s = run.settings
        error = _one_line(res.error, [d.target, d.secret, s.smtp_username, s.smtp_password, s.vapid_private_key])
    return DeliveryResult(
        delivery_id=d.delivery_id,
        channel_id=d.channel_id,
        outcome=res.outcome,
        error=error,
        status_code=res.status,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


_DONE = object()


async def _run_all(
    deliveries: Sequence[Delivery], settings: ChannelSettings, out: queue.Queue, stop: threading.Event
) -> None:
    run = _Run(settings)
    it = iter(deliveries)
    try:

        async def worker() -> None:
            for d in it:  # a shared iterator: each delivery is taken by exactly one worker
                if stop.is_set():
                    return
                out.put(await _deliver_one(run, d))

        n = max(1, min(settings.concurrency, len(deliveries)))
        await asyncio.gather(*(worker() for _ in range(n)))
    finally:
        await run.aclose()


def deliver_all(
    deliveries: Sequence[Delivery],
    settings: ChannelSettings,
    *,
    on_results: Callable[[list[DeliveryResult]], None],
    flush_every: int = 100,
    flush_interval_s: float = 0.2,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_every_s: float = 30.0,
) -> Counter[Outcome]:
    """Send every delivery concurrently (at most settings.concurrency in flight), call on_results in
    the caller's thread with groups of finished results (so the caller commits them in small
    transactions and a kill loses little), and return counts per outcome. One failing delivery never
    stops the others. Never raises for a delivery's failure. `heartbeat`, if given, is called in
    the caller's thread every `heartbeat_every_s` while deliveries are in flight (the dispatcher
    renews its claims' lease there).

    If `on_results` raises (or the caller is interrupted), no further delivery is started, the
    ones in flight finish (bounded by timeout_s), their results are dropped and the exception
    propagates.
    """
    counts: Counter[Outcome] = Counter()
    if not deliveries:
        return counts
    if flush_every < 1:
        raise ValueError("flush_every must be >= 1")
    if heartbeat_every_s <= 0:
        raise ValueError("heartbeat_every_s must be > 0")
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            asyncio.run(_run_all(deliveries, settings, out, stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)
        finally:
            out.put(_DONE)

    thread = threading.Thread(target=runner, name="smartbuy-deliver-all", daemon=True)
    thread.start()
    batch: list[DeliveryResult] = []
    first_at = 0.0
    next_beat = time.monotonic() + heartbeat_every_s
    try:
        while True:
            deadlines = ([first_at + flush_interval_s] if batch else []) + ([next_beat] if heartbeat else [])
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                item = out.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _DONE:
                break
            if heartbeat is not None and time.monotonic() >= next_beat:
                heartbeat()
                next_beat = time.monotonic() + heartbeat_every_s
            if item is not None:
                if not batch:
                    first_at = time.monotonic()
                batch.append(item)
                counts[item.outcome] += 1
            if batch and (len(batch) >= flush_every or time.monotonic() - first_at >= flush_interval_s):
                group, batch = batch, []
                on_results(group)
        if batch:
            on_results(batch)
    except BaseException:
        stop.set()
        thread.join()
        raise
    thread.join()
    if failure:
        raise RuntimeError("deliver_all: the delivery loop failed") from failure[0]
    return counts
