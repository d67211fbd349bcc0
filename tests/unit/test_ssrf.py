"""SSRF guard: table of URLs. Only numeric IPs and localhost-style names: no DNS leaves the machine.

The guard's resolver is replaced by one that fails the test if any lookup is attempted for a
name that is not expected to resolve locally, so a regression cannot send a query outside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from smartbuy_pipeline.acquisition import ssrf
from smartbuy_pipeline.acquisition.ssrf import (
    GuardedResolver,
    SsrfGuard,
    SsrfRefused,
    check_url,
    is_public_address,
    parse_ip_literal,
)


@pytest.fixture(autouse=True)
def no_outside_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any getaddrinfo call must be for a loopback name; record them."""
    seen: list[str] = []
    real = asyncio.BaseEventLoop.getaddrinfo

    async def guarded(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(host)
        assert host in ("localhost", "127.0.0.1", "::1"), f"unexpected DNS lookup of {host!r}"
        return await real(self, host, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", guarded)
    return seen


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


REFUSED = [
    # schemes
    "ftp://8.8.8.8/file",
    "file:///etc/passwd",
    "gopher://8.8.8.8:70/_x",
    "javascript:alert(1)",
    "//8.8.8.8/no-scheme",
    "http:///no-host",
    # private / loopback / link-local / special IPv4
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://127.0.0.1/",
    "http://127.8.9.10:8080/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/",
    "http://0.0.0.0/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.2.10/",  # TEST-NET-1
    "http://198.18.0.1/",  # benchmarking
    # IPv6
    "http://[::1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2001:db8::1]/",  # documentation
    # legacy numeric forms of 127.0.0.1 / 10.0.0.1
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://012.0.0.1/",  # octal 10.0.0.1
    "http://127.0.0.1./",  # trailing dot
    # names
    "http://localhost/",
    "http://LOCALHOST:8000/",
    "http://foo.localhost/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://db.internal/",
    "http://printer.local/",
    # credentials
    "http://user:pass@8.8.8.8/",
    # bad port
    "http://8.8.8.8:99999/",
]

ALLOWED = [
    "http://8.8.8.8/",
    "https://8.8.8.8:443/path?q=1",
    "HTTP://1.1.1.1/",
    "http://[2001:4860:4860::8888]/",
    "http://[::ffff:8.8.8.8]/",  # IPv4-mapped public
    "http://134744072/",  # decimal 8.8.8.8
    "http://100.63.255.255/",  # just below CGNAT
    "http://100.128.0.1/",  # just above CGNAT
    "http://172.32.0.1/",  # just above 172.16/12
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(SsrfRefused) as ei:
        run(check_url(url, allow_private_network=False))
    assert ei.value.detail


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed_without_dns(url: str, no_outside_dns: list[str]) -> None:
    run(check_url(url, allow_private_network=False))
    assert no_outside_dns == []  # numeric hosts never hit the resolver


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/", "http://localhost:9000/", "http://10.1.2.3/", "http://[::1]/", "http://192.168.0.10/"],
)
def test_private_allowed_when_shop_is_local(url: str) -> None:
    run(check_url(url, allow_private_network=True))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",  # decimal 169.254.169.254
        "http://metadata.google.internal/",
        "http://[fd00:ec2::254]/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
    ],
)
def test_metadata_and_schemes_refused_even_for_local_shops(url: str) -> None:
    with pytest.raises(SsrfRefused):
        run(check_url(url, allow_private_network=True))


def test_hostname_resolving_to_loopback_is_refused_and_cached(no_outside_dns: list[str]) -> None:
    # "localhost" is refused by name; use the resolver path directly with a loopback literal host
    async def go() -> None:
        guard = SsrfGuard()
        addrs = await guard.resolve("localhost")
        assert all(ipaddress.ip_address(a).is_loopback for a in addrs)
        await guard.resolve("localhost")
        assert no_outside_dns.count("localhost") == 1  # cached per host
        with pytest.raises(SsrfRefused):
            guard.check_addresses("localhost", addrs)

    run(go())


def test_mixed_resolution_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host is public only if ALL its addresses are public (no DNS: resolution is faked)."""

    async def fake_getaddrinfo(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert host == "shop.example"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 0)),
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(SsrfRefused, match="10.0.0.7"):
        run(check_url("https://shop.example/p/1", allow_private_network=False))


def test_public_name_allowed_with_fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def fake_getaddrinfo(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)

    async def go() -> None:
        guard = SsrfGuard()
        for _ in range(3):
            await guard.check_url("https://Shop.Example./p/1", allow_private_network=False)
        # the aiohttp resolver shares the cache and hands out exactly the checked address
        res = await GuardedResolver(guard).resolve("shop.example", 443, socket.AF_UNSPEC)
        assert [r["host"] for r in res] == ["93.184.216.34"]

    run(go())
    assert calls == ["shop.example"]


def test_dns_failure_is_not_an_ssrf_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_getaddrinfo(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(ssrf.HostResolutionError):
        run(check_url("https://nope.example/", allow_private_network=False))


def test_guarded_resolver_refuses_private() -> None:
    async def go() -> None:
        with pytest.raises(SsrfRefused):
            await GuardedResolver(SsrfGuard()).resolve("127.0.0.1", 80)

    run(go())


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("[::1]", "::1"),
        ("shop.example", None),
        ("08.0.0.1", None),
        ("256.0.0.1", None),
        ("4294967296", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    got = parse_ip_literal(host)
    assert (str(got) if got is not None else None) == expected


def test_is_public_address() -> None:
    assert is_public_address(ipaddress.ip_address("8.8.8.8"))
    assert not is_public_address(ipaddress.ip_address("100.64.0.1"))
    assert not is_public_address(ipaddress.ip_address("::ffff:192.168.1.1"))
