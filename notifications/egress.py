"""The egress policy: where a vendor adapter may connect.

A vendor's destination is typed by an operator (a webhook URL, a Twilio base URL, an SMTP
host). Unchecked, it makes Beacon a way into its own network: `http://127.0.0.1:6379/` (Redis),
`http://169.254.169.254/` (the cloud's metadata service and its credentials), `10.0.0.5:6379`.
So every destination is checked twice: when the vendor is saved, and when the adapter connects.

Policy (settings VENDOR_EGRESS_ALLOWED_NETWORKS, VENDOR_EGRESS_ALLOW_HTTP):

1. HTTP vendors use https://, unless VENDOR_EGRESS_ALLOW_HTTP (development, tests, sandbox).
2. The host name is resolved and EVERY address it resolves to must be public (Python's
   `ip.is_global`: not private, loopback, shared, reserved or documentation space) or inside
   VENDOR_EGRESS_ALLOWED_NETWORKS. Development and tests allow loopback there, explicitly.
3. Never, whatever the settings say: link-local (169.254.0.0/16, fe80::/10, where cloud
   metadata services live), the unspecified address (0.0.0.0 reaches the local host),
   multicast, and the known metadata addresses.
4. At send time the adapter connects to an address it has just checked, never resolving the
   name a second time, so a DNS answer that changes between check and connect (DNS rebinding)
   cannot slip a private address in. TLS still verifies the certificate for the host name.

Through an egress proxy (HTTPS_PROXY) the proxy resolves names and is the control point:
Beacon then checks the scheme and literal IP addresses only.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even when an allowed network covers them (rule 3).
NEVER_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8", "fd00:ec2::254/128",
                "100.100.100.200/32")  # the last two: AWS's IPv6 and Alibaba's metadata services
)


class EgressRefused(ValueError):
    """A destination the egress policy does not allow. The message says which address and why,
    and is safe to show an operator and to store on a delivery attempt."""


@dataclass(frozen=True)
class Destination:
    """Where an adapter connects: `scheme` is "https", "http" or "smtp"."""

    scheme: str
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Destination:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise EgressRefused(f"{url!r} is not an http(s) URL with a host")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise EgressRefused(f"{url!r} has an invalid port") from exc
        return cls(scheme=scheme, host=parts.hostname, port=port)


def address_refusal(address: IpAddress) -> str | None:
    """Why the policy refuses to connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 is 10.0.0.5
    if any(address in network for network in NEVER_NETWORKS):
        return f"{address} is link-local, metadata, multicast or unspecified: never allowed"
    if any(address in network for network in _networks(tuple(settings.VENDOR_EGRESS_ALLOWED_NETWORKS))):
        return None
    if address.is_global:
        return None
    return f"{address} is not a public address (allow its network in VENDOR_EGRESS_ALLOWED_NETWORKS)"


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in spec)


def scheme_refusal(scheme: str) -> str | None:
    if scheme == "http" and not settings.VENDOR_EGRESS_ALLOW_HTTP:
        return "plain http:// is not allowed for vendors: use https:// (or set VENDOR_EGRESS_ALLOW_HTTP)"
    return None


def egress_resolve(host: str, port: int) -> list[tuple[int, str]]:
    """Resolve `host` and check every address; return [(family, address)] to connect to.

    Raises EgressRefused when the name does not resolve or ANY of its addresses is refused (a
    name that mixes public and private answers is refused whole: which one a later connect picks
    is not ours to choose).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressRefused(f"{host} does not resolve") from exc
    found: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if reason := address_refusal(address):
            raise EgressRefused(f"{host} resolves to {reason}")
        if (family, str(address)) not in found:
            found.append((family, str(address)))
    return found


def egress_connect(
    host: str, port: int, timeout: float | None, source_address: tuple[str, int] | None = None
) -> socket.socket:
    """A TCP connection to `host`:`port` made to an address just checked (rule 4).

    Raises EgressRefused as `egress_resolve` does, or the OSError of the last address tried.
    """
    last_error: OSError | None = None
    for family, address in egress_resolve(host, port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((address, port))
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    assert last_error is not None
    raise last_error


def egress_check(destination: Destination, *, resolve: bool = True) -> None:
    """Raise EgressRefused unless the policy allows `destination` (rules 1-3).

    With `resolve` False only the scheme and a literal IP address are checked: through a proxy
    (which resolves names itself), or before a connection that resolves and checks as it
    connects (`egress_connect`).
    """
    if reason := scheme_refusal(destination.scheme):
        raise EgressRefused(reason)
    try:
        literal = ipaddress.ip_address(destination.host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if reason := address_refusal(literal):
            raise EgressRefused(reason)
        return
    if resolve:
        egress_resolve(destination.host, destination.port)
