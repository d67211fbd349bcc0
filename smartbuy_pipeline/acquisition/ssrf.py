"""SSRF guard: refuse URLs that would make the fetcher talk to internal infrastructure.

`check_url(url, allow_private_network=...)` raises `SsrfRefused` for:
- any scheme other than http / https, URLs without a host, URLs with user:password@;
- hostnames that name internal services (localhost, *.localhost, *.internal, *.local,
  metadata.google.internal, instance-data, ...);
- IP literals (including the inet_aton forms "2130706433", "0x7f.1", "0177.0.0.1", "127.1")
  and resolved addresses that are loopback, private (RFC 1918, fc00::/7), link-local
  (169.254/16 incl. the 169.254.169.254 metadata address, fe80::/10), unspecified, multicast,
  reserved / documentation / benchmarking, CGNAT 100.64/10, or any of those embedded in IPv6
  (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible, 6to4, Teredo, NAT64 64:ff9b::/96).

A host is public only if EVERY address it resolves to is public.

`allow_private_network=True` (the simulator, tests) skips the address rules and DNS, but cloud
metadata endpoints (169.254.169.254, fd00:ec2::254, metadata.google.internal, ...) and non-http
schemes stay refused even then.

Resolution goes through the running loop's getaddrinfo and is cached per host for the life of
the `SsrfGuard` (one per fetch run; DNS TTLs are deliberately ignored within a run). The same
guard backs `GuardedResolver`, the aiohttp resolver the fetch engine connects with, so the
addresses checked are exactly the addresses connected to (no DNS-rebinding window between the
check and the connect).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "GuardedResolver",
    "HostResolutionError",
    "SsrfGuard",
    "SsrfRefused",
    "check_url",
    "is_public_address",
    "parse_ip_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Refused whatever the shop's allow_private_network says.
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6 IMDS
    }
)
# Refused for shops that are not allow_private_network.
INTERNAL_HOST_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
INTERNAL_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

# Belt and braces on top of ipaddress' is_global (whose tables vary between Python patch
# releases): networks that are never a shop.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_INET_ATON_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class SsrfRefused(Exception):
    """The URL must not be fetched; `detail` says why (never contains secrets)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class HostResolutionError(OSError):
    """The host did not resolve: a connection problem, not an SSRF refusal."""


def parse_ip_literal(host: str) -> IPAddress | None:
    """Parse a host as an IP address, accepting the legacy inet_aton IPv4 forms.

    "2130706433", "0x7f000001", "0177.0.0.1", "127.1" all mean 127.0.0.1 to getaddrinfo and to
    most HTTP stacks, so they must mean it to the guard too. Returns None for a hostname.
    """
    h = host.strip("[]").lower()
    if "%" in h:  # IPv6 zone id: fe80::1%eth0
        h = h.split("%", 1)[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    parts = h.split(".")
    if parts and parts[-1] == "":
        parts = parts[:-1]  # trailing dot
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.match(p) for p in parts):
        return None
    try:
        nums = [
            int(p, 16) if p.startswith("0x") else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
            for p in parts
        ]
    except ValueError:  # "08" is not octal: not an address
        return None
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True if `ip` is a globally routable unicast address (and so is anything embedded in it)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
    if (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    return not any(ip.version == net.version and ip in net for net in _BLOCKED_NETWORKS)


def _is_metadata_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return embedded in METADATA_ADDRESSES
    return ip in METADATA_ADDRESSES


def _normalise_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class SsrfGuard:
    """Per-run SSRF checker with a per-host resolution cache (failures are not cached)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[IPAddress, ...]] = {}
        self._inflight: dict[str, asyncio.Future[tuple[IPAddress, ...]]] = {}

    async def resolve(self, host: str) -> tuple[IPAddress, ...]:
        """All addresses of `host` (cached); raises HostResolutionError if it does not resolve."""
        host = _normalise_host(host)
        literal = parse_ip_literal(host)
        if literal is not None:
            return (literal,)
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        pending = self._inflight.get(host)
        if pending is not None:  # coalesce concurrent lookups of one host
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[IPAddress, ...]] = loop.create_future()
        self._inflight[host] = fut
        try:
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise HostResolutionError(f"cannot resolve host {host!r}: {exc}") from exc
            addrs: list[IPAddress] = []
            for family, _, _, _, sockaddr in infos:
                if family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
                if ip not in addrs:
                    addrs.append(ip)
            if not addrs:
                raise HostResolutionError(f"host {host!r} has no IPv4/IPv6 address")
            result = tuple(addrs)
            self._cache[host] = result
            fut.set_result(result)
            return result
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: a lone caller must not log "never retrieved"
            raise
        finally:
            self._inflight.pop(host, None)

    def check_host_name(self, host: str, *, allow_private_network: bool) -> None:
        """Name-only rules (no DNS)."""
        h = _normalise_host(host)
        if h in METADATA_HOSTS:
            raise SsrfRefused(f"host {h!r} is a cloud metadata endpoint")
        literal = parse_ip_literal(h)
        if literal is not None and _is_metadata_address(literal):
            raise SsrfRefused(f"address {literal} is a cloud metadata endpoint")
        if allow_private_network:
            return
        if h in INTERNAL_HOSTS or h.endswith(INTERNAL_HOST_SUFFIXES):
            raise SsrfRefused(f"host {h!r} names an internal service")
        if literal is not None and not is_public_address(literal):
            raise SsrfRefused(f"address {literal} is not a public unicast address")

    def check_addresses(self, host: str, addrs: Iterable[IPAddress]) -> None:
        for ip in addrs:
            if not is_public_address(ip):
                raise SsrfRefused(f"host {host!r} resolves to non-public address {ip}")

    async def check_url(self, url: str, *, allow_private_network: bool) -> None:
        """Raise SsrfRefused unless `url` may be fetched; HostResolutionError if DNS fails."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise SsrfRefused(f"malformed URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise SsrfRefused(f"scheme {scheme or '(none)'!r} is not http/https")
        if not host:
            raise SsrfRefused("URL has no host")
        if parts.username is not None or parts.password is not None:
            raise SsrfRefused("URLs with credentials are refused")
        self.check_host_name(host, allow_private_network=allow_private_network)
        if allow_private_network:
            return
        addrs = await self.resolve(host)
        self.check_addresses(_normalise_host(host), addrs)


async def check_url(url: str, *, allow_private_network: bool, guard: SsrfGuard | None = None) -> None:
    """Module-level convenience: check one URL (pass the run's `guard` to share its DNS cache)."""
    await (guard or SsrfGuard()).check_url(url, allow_private_network=allow_private_network)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that only ever hands out public addresses checked by the guard."""

    def __init__(self, guard: SsrfGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addrs = await self._guard.resolve(host)
        h = _normalise_host(host)
        self._guard.check_host_name(h, allow_private_network=False)
        self._guard.check_addresses(h, addrs)  # SsrfRefused surfaces as a connection error
        out: list[ResolveResult] = []
        for ip in addrs:
            fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, 0) and fam != family:
                continue
            out.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=fam,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not out:
            raise HostResolutionError(f"host {h!r} has no address of family {family!r}")
        return out

    async def close(self) -> None:
        return None
