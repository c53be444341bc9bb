"""Which network peers Beacon believes: only the proxies named in TRUSTED_PROXIES.

A client that reaches gunicorn directly can send any `X-Forwarded-Proto` or `X-Forwarded-For`
it likes. Those headers are believed only when the peer (REMOTE_ADDR) is a proxy the operator
named; from anyone else they are removed before Django (or anything after this middleware)
reads them. `client_address` gives the address every per-address decision uses: the login
lockout, the API's failed-key throttle and the /metrics allow-list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Headers a proxy sets about the client; meaningless (and removed) from any other peer.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
                     "HTTP_FORWARDED")

FORWARDED_BY_UNNAMED_PROXY = "beacon.forwarded_by_unnamed_proxy"
# Stands for a request with no peer address at all (a test client's internal request): one
# bucket for all of them, and a valid IP for django-axes' address column.
UNKNOWN_ADDRESS = "0.0.0.0"


@cache
def _networks(spec: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in spec)


def address_in(address: str, networks: list[str] | tuple[str, ...]) -> bool:
    """True when `address` is an IP address inside one of `networks` (CIDR strings)."""
    if not networks:  # the usual case for TRUSTED_PROXIES: no parsing on every request
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(networks)))


def peer_is_trusted_proxy(request: HttpRequest) -> bool:
    return address_in(request.META.get("REMOTE_ADDR", ""), settings.TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address, or None when a trusted proxy forwarded without saying whose.

    From an untrusted peer: the peer itself (whatever `X-Forwarded-For` says). From a trusted
    proxy: the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    to its left were written by the client and prove nothing).
    """
    peer = request.META.get("REMOTE_ADDR", "")
    if not address_in(peer, settings.TRUSTED_PROXIES):
        return peer or None
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not address_in(hop, settings.TRUSTED_PROXIES):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None  # a proxy that writes garbage is not evidence of anyone
    return None


def client_address_or_peer(request: HttpRequest) -> str:
    """`client_address`, falling back to the peer: for counters (lockouts, throttles) that must
    key on something. django-axes calls it (AXES_CLIENT_IP_CALLABLE)."""
    return client_address(request) or request.META.get("REMOTE_ADDR", "") or UNKNOWN_ADDRESS


class TrustedProxyMiddleware:
    """First in the chain: forget forwarding headers that did not come from a trusted proxy, so
    SECURE_PROXY_SSL_HEADER and everything else only ever see a named proxy's word."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not peer_is_trusted_proxy(request):
            dropped = [header for header in FORWARDED_HEADERS if request.META.pop(header, None) is not None]
            # A peer that forwards for others but is not named is most likely a proxy the
            # operator forgot: /metrics refuses it rather than take every client for the proxy.
            request.META[FORWARDED_BY_UNNAMED_PROXY] = bool(dropped)
        return self.get_response(request)


def forwarded_by_unnamed_proxy(request: HttpRequest) -> bool:
    """True when the request carried forwarding headers from a peer not in TRUSTED_PROXIES."""
    return bool(request.META.get(FORWARDED_BY_UNNAMED_PROXY))
