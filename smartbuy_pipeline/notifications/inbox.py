"""LocalInbox: real local receivers for every notification channel (tests, `make demo`, benchmarks).

One background thread runs one event loop with:

- an aiohttp server on 127.0.0.1 (free port unless given):
    POST /hooks/<name>    webhook receiver: verifies X-SmartBuy-Signature when a secret is
                          registered for <name> (401 otherwise), dedupes by Idempotency-Key
                          (a duplicate answers 200 {"status": "duplicate"} and is not recorded
                          again), records the body and a subset of headers;
    POST /push/<name>     a Web Push *service* endpoint (what FCM / Mozilla autopush are for a
                          browser): records TTL / Urgency / Topic / Content-Encoding /
                          Authorization and the encrypted body; answers 201, or the status set
                          with `push_status(name, 410)`;
    POST /apprise/<name>  receives Apprise's json:// (jsons:// with TLS) posts: the body is
                          {"version": "1.0", "title", "message", "attachments": [], "type"}.
- an aiosmtpd `SMTP` server on the same loop (optionally STARTTLS-capable / requiring AUTH)
  collecting every message as a parsed `email.message.EmailMessage`.

Fault controls (per name, any route): `fail_next(name, n, status=503)`, `hold_next(name, n)`
(the request is read and counted as received but not answered until `release()`), `down(name)` /
`up(name)` (answer 503 to everything), `push_status(name, status)`; SMTP: `smtp_reject(address,
550)` refuses a recipient at RCPT.

    with LocalInbox() as inbox:
        url = inbox.webhook_url("shop-bot", secret="s3cret")
        ... deliver ...
        inbox.wait_for(lambda: inbox.unique("shop-bot") == 10, timeout=5)

Reads are thread-safe (a lock; lists are returned as copies). `stop()` releases held requests,
closes the servers and joins the thread.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import ipaddress
import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from multidict import CIMultiDict

from smartbuy_pipeline.domain.notifications import verify_webhook

__all__ = [
    "AppriseRecord",
    "HookRecord",
    "LocalInbox",
    "MailRecord",
    "PushRecord",
    "self_signed_certificate",
]

_HOOK_HEADERS = (
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-smartbuy-timestamp",
    "x-smartbuy-signature",
    "x-smartbuy-delivery",
    "x-smartbuy-attempt",
)
_PUSH_HEADERS = ("ttl", "urgency", "topic", "content-encoding", "content-type", "authorization", "crypto-key")


@dataclass(frozen=True)
class HookRecord:
    name: str
    key: str | None  # Idempotency-Key
    body: Any  # parsed JSON
    raw: bytes
    headers: CIMultiDict[str]  # case-insensitive, see _HOOK_HEADERS
    received_at: datetime  # UTC
    received_mono: float  # time.monotonic()
    signature_ok: bool | None  # None: no secret registered for the name


@dataclass(frozen=True)
class PushRecord:
    name: str
    headers: CIMultiDict[str]  # case-insensitive: ttl, urgency, topic, content-encoding, authorization, ...
    body: bytes  # the encrypted (aes128gcm) payload
    received_at: datetime
    received_mono: float

    @property
    def body_length(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class AppriseRecord:
    name: str
    body: dict  # {"version", "title", "message", "attachments", "type"}
    headers: CIMultiDict[str]
    received_at: datetime
    received_mono: float

    @property
    def title(self) -> str | None:
        return self.body.get("title")

    @property
    def message(self) -> str | None:
        return self.body.get("message")


@dataclass(frozen=True)
class MailRecord:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool
    authenticated: bool
    received_at: datetime


@dataclass
class _Endpoint:
    secret: str | None = None
    received: int = 0
    keys: set[str] = field(default_factory=set)
    hooks: list[HookRecord] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0  # bad signature
    pushes: list[PushRecord] = field(default_factory=list)
    apprise: list[AppriseRecord] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    fail_remaining: int = 0
    fail_status: int = 503
    fail_location: str | None = None
    hold_remaining: int = 0
    held: int = 0
    is_down: bool = False
    push_status: int = 201
    release: asyncio.Event | None = None


def self_signed_certificate(directory: str | Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
    """Write a throw-away self-signed certificate (EC P-256) for `hosts` and its key into
    `directory`; returns (cert_file, key_file). The cert file doubles as the client's CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = d / "inbox-cert.pem", d / "inbox-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class _SmtpHandler:
    def __init__(self, inbox: LocalInbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        with self.inbox._lock:
            code = self.inbox._smtp_reject.get(address.lower())
        if code is not None:
            # Quotes the address on purpose: the sender must redact it from its error.
            return f"{code} 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        rec = MailRecord(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=msg,  # type: ignore[arg-type]
            tls=session.ssl is not None,
            authenticated=bool(session.authenticated),
            received_at=datetime.now(UTC),
        )
        with self.inbox._lock:
            self.inbox._mail.append(rec)
        return "250 Message accepted for delivery"


class LocalInbox:
    """Local webhook / Web Push service / Apprise JSON / SMTP receivers in one background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        http_port: int = 0,
        smtp_port: int = 0,
        *,
        smtp_tls_context: ssl.SSLContext | None = None,
        smtp_require_starttls: bool = False,
        smtp_credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.http_port = http_port
        self.smtp_port = smtp_port
        self._smtp_tls = smtp_tls_context
        self._smtp_require_starttls = smtp_require_starttls
        self._smtp_credentials = smtp_credentials
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._mail: list[MailRecord] = []
        self._smtp_reject: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._smtp_server: asyncio.AbstractServer | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalInbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalInbox:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="smartbuy-local-inbox", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("LocalInbox failed to start") from self._error
        if not self._ready.is_set():
            raise RuntimeError("LocalInbox did not start within 30 s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.host, self.http_port, backlog=2048)
            await site.start()
            self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.base_url = f"http://{host}:{self.http_port}"
            await self._start_smtp()
            self._ready.set()
            await self._stopping.wait()
        finally:
            with self._lock:
                endpoints = list(self._endpoints.values())
            for ep in endpoints:  # let held requests finish before the server goes away
                if ep.release is not None:
                    ep.release.set()
            if self._smtp_server is not None:
                self._smtp_server.close()
                await self._smtp_server.wait_closed()
            await self._runner.cleanup()

    async def _start_smtp(self) -> None:
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        authenticator = None
        if self._smtp_credentials is not None:
            user, password = self._smtp_credentials

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and auth_data.login == user.encode()
                    and auth_data.password == password.encode()
                )
                return AuthResult(success=ok, handled=False)

        handler = _SmtpHandler(self)
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                handler,
                hostname="inbox.smartbuy.local",
                enable_SMTPUTF8=True,
                tls_context=self._smtp_tls,
                require_starttls=self._smtp_require_starttls,
                authenticator=authenticator,
                auth_required=authenticator is not None,
                auth_require_tls=True,
                loop=loop,
            )

        self._smtp_server = await loop.create_server(factory, host=self.host, port=self.smtp_port)
        self.smtp_port = self._smtp_server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)
        thread.join(30)
        self._thread = None
        self._loop = None

    # ---------------------------------------------------------------- URLs
    @property
    def smtp_host(self) -> str:
        return self.host

    def webhook_url(self, name: str, secret: str | None = None) -> str:
        """URL of the webhook receiver <name>; with `secret`, signatures are verified (401 if bad)."""
        with self._lock:
            self._ep(name).secret = secret
        return f"{self.base_url}/hooks/{name}"

    def push_endpoint(self, name: str) -> str:
        return f"{self.base_url}/push/{name}"

    def apprise_url(self, name: str) -> str:
        """An Apprise json:// URL posting to /apprise/<name>."""
        return f"json://{self.host}:{self.http_port}/apprise/{name}"

    def channel_settings(self, **overrides: Any) -> Any:
        """ChannelSettings pointing at this inbox (SMTP host/port, private network allowed)."""
        from smartbuy_pipeline.notifications.channels import ChannelSettings

        kw: dict[str, Any] = {"smtp_host": self.host, "smtp_port": self.smtp_port, "allow_private_network": True}
        kw.update(overrides)
        return ChannelSettings(**kw)

    # ---------------------------------------------------------------- fault controls
    def fail_next(self, name: str, n: int, status: int = 503, *, location: str | None = None) -> None:
        """Answer the next `n` requests to <name> with `status` (and a Location header when
        given, e.g. status=307 to play a redirecting receiver)."""
        with self._lock:
            ep = self._ep(name)
            ep.fail_remaining, ep.fail_status, ep.fail_location = n, status, location

    def hold_next(self, name: str, n: int) -> None:
        with self._lock:
            self._ep(name).hold_remaining = n

    def release(self, name: str | None = None) -> None:
        """Answer the held requests (of `name`, or all) and stop holding new ones."""
        loop = self._loop

        def do() -> None:
            with self._lock:
                eps = [self._ep(name)] if name is not None else list(self._endpoints.values())
                for ep in eps:
                    ep.hold_remaining = 0
                    if ep.release is not None:
                        ep.release.set()
                        ep.release = None

        if loop is not None:
            loop.call_soon_threadsafe(do)

    def down(self, name: str) -> None:
        with self._lock:
            self._ep(name).is_down = True

    def up(self, name: str) -> None:
        with self._lock:
            self._ep(name).is_down = False

    def push_status(self, name: str, status: int = 201) -> None:
        with self._lock:
            self._ep(name).push_status = status

    def smtp_reject(self, address: str, code: int = 550) -> None:
        with self._lock:
            self._smtp_reject[address.lower()] = code

    # ---------------------------------------------------------------- stats (thread-safe)
    def received(self, name: str) -> int:
        """Raw requests to <name> on any route, including duplicates, failures and held ones."""
        with self._lock:
            return self._ep(name).received

    def unique(self, name: str) -> int:
        """Distinct Idempotency-Keys accepted by the webhook receiver <name>."""
        with self._lock:
            return len(self._ep(name).keys)

    def duplicates(self, name: str) -> int:
        with self._lock:
            return self._ep(name).duplicates

    def rejected(self, name: str) -> int:
        """Webhook requests refused for a missing/bad/stale signature."""
        with self._lock:
            return self._ep(name).rejected

    def held(self, name: str) -> int:
        """Requests currently held (received, not answered)."""
        with self._lock:
            return self._ep(name).held

    def statuses(self, name: str) -> Counter[int]:
        with self._lock:
            return Counter(self._ep(name).statuses)

    def hooks(self, name: str) -> list[HookRecord]:
        with self._lock:
            return list(self._ep(name).hooks)

    def pushes(self, name: str) -> list[PushRecord]:
        with self._lock:
            return list(self._ep(name).pushes)

    def apprise(self, name: str) -> list[AppriseRecord]:
        with self._lock:
            return list(self._ep(name).apprise)

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [m.message for m in self._mail]

    @property
    def mail(self) -> list[MailRecord]:
        with self._lock:
            return list(self._mail)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> bool:
        """Poll `predicate` until true (returns True) or `timeout` seconds pass (returns False)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    # ---------------------------------------------------------------- HTTP side
    def _ep(self, name: str) -> _Endpoint:  # caller holds the lock
        ep = self._endpoints.get(name)
        if ep is None:
            ep = self._endpoints[name] = _Endpoint()
        return ep

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/hooks/{name}", self._hook)
        app.router.add_post("/push/{name}", self._push)
        app.router.add_post("/apprise/{name}", self._apprise)
        return app

    async def _gate(self, name: str) -> web.Response | None:
        """Count the request and apply the name's faults; None means: handle it normally."""
        wait: asyncio.Event | None = None
        with self._lock:
            ep = self._ep(name)
            ep.received += 1
            if ep.is_down:
                ep.statuses[503] += 1
                return web.Response(status=503, text="down")
            if ep.fail_remaining > 0:
                ep.fail_remaining -= 1
                ep.statuses[ep.fail_status] += 1
                headers = {"Location": ep.fail_location} if ep.fail_location else None
                return web.Response(status=ep.fail_status, text="injected failure", headers=headers)
            if ep.hold_remaining > 0:
                ep.hold_remaining -= 1
                ep.held += 1
                if ep.release is None:
                    ep.release = asyncio.Event()
                wait = ep.release
        if wait is not None:
            try:
                await wait.wait()
            finally:
                with self._lock:
                    ep.held -= 1
        return None

    @staticmethod
    def _now() -> tuple[datetime, float]:
        return datetime.now(UTC), time.monotonic()

    async def _receive(self, request: web.Request, header_names) -> tuple | web.Response:
        """What every receiver does first: read the body, apply the fault controls (a response
        to return at once), then stamp the arrival and keep the headers worth recording."""
        name = request.match_info["name"]
        raw = await request.read()
        gated = await self._gate(name)
        if gated is not None:
            return gated
        at, mono = self._now()
        headers = CIMultiDict((h, request.headers[h]) for h in header_names if h in request.headers)
        return name, raw, at, mono, headers

    async def _hook(self, request: web.Request) -> web.Response:
        received = await self._receive(request, _HOOK_HEADERS)
        if isinstance(received, web.Response):
            return received
        name, raw, at, mono, headers = received
        with self._lock:
            ep = self._ep(name)
            secret = ep.secret
        sig_ok: bool | None = None
        if secret is not None:
            sig_ok = verify_webhook(
                secret,
                request.headers.get("X-SmartBuy-Timestamp"),
                request.headers.get("X-SmartBuy-Signature"),
                raw,
                now=time.time(),
            )
            if not sig_ok:
                with self._lock:
                    ep.rejected += 1
                    ep.statuses[401] += 1
                return web.json_response({"status": "bad signature"}, status=401)
        try:
            body = json.loads(raw)
        except ValueError:
            with self._lock:
                ep.statuses[400] += 1
            return web.json_response({"status": "bad json"}, status=400)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            ep.statuses[200] += 1
            if key is not None and key in ep.keys:
                ep.duplicates += 1
                return web.json_response({"status": "duplicate"})
            if key is not None:
                ep.keys.add(key)
            ep.hooks.append(HookRecord(name, key, body, raw, headers, at, mono, sig_ok))
        return web.json_response({"status": "ok"})

    async def _push(self, request: web.Request) -> web.Response:
        received = await self._receive(request, _PUSH_HEADERS)
        if isinstance(received, web.Response):
            return received
        name, raw, at, mono, headers = received
        with self._lock:
            ep = self._ep(name)
            status = ep.push_status
            ep.statuses[status] += 1
            if 200 <= status < 300:
                ep.pushes.append(PushRecord(name, headers, raw, at, mono))
        if status == 201:
            return web.Response(status=201, headers={"Location": f"{self.base_url}/push/{name}/m/{len(raw)}"})
        return web.Response(status=status, text="push service status")

    async def _apprise(self, request: web.Request) -> web.Response:
        received = await self._receive(request, ("content-type", "user-agent"))
        if isinstance(received, web.Response):
            return received
        name, raw, at, mono, headers = received
        try:
            body = json.loads(raw)
        except ValueError:
            with self._lock:
                self._ep(name).statuses[400] += 1
            return web.Response(status=400, text="bad json")
        with self._lock:
            ep = self._ep(name)
            ep.statuses[200] += 1
            ep.apprise.append(AppriseRecord(name, body if isinstance(body, dict) else {"value": body}, headers, at, mono))
        return web.Response(status=200, text="ok")
