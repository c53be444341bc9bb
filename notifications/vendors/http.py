"""Shared HTTP plumbing for the HTTP adapters: one POST, always bounded in time, failures classified.

Classification (the vendor modules only refine the 4xx case):

| what happened                                      | VendorError                     |
|----------------------------------------------------|---------------------------------|
| connection refused, DNS failure, connect timeout   | transient (not accepted)        |
| TLS handshake failure                              | transient (not accepted)        |
| read timeout after the request was sent            | outcome_unknown (maybe accepted)|
| connection reset/closed while waiting for answer   | outcome_unknown (maybe accepted)|
| the proxy unreachable or refusing the tunnel       | transient (not accepted)        |
| HTTP 408, 429, 5xx                                 | transient                       |
| HTTP 401, 403 (credentials, account)               | misconfigured (fails over)      |
| other 4xx, 3xx (we never follow redirects)         | permanent                       |
| malformed URL (the vendor's configuration)         | misconfigured (fails over)      |
| destination refused by the egress policy           | misconfigured (fails over)      |
| malformed header                                   | permanent                       |

Connections: one urllib3 pool manager per adapter key, proxy and TLS setting per process, so
keep-alive connections are reused across sends (hundreds per second would otherwise pay a
TCP+TLS handshake each). The table is cleared in a forked child: a child must not share its
parent's sockets. urllib3 is called directly, not through `requests`: a send costs about 190 µs
of CPU that way against 470-540 µs through `requests.Session.post` (docs/performance.md).

Egress: every direct connection resolves the vendor's host through the egress policy and
connects to the address it checked (notifications/egress.py); through a proxy, the scheme and a
literal address are checked and the proxy resolves the name.

Environment: the proxy variables (HTTPS_PROXY, NO_PROXY, ...), REQUESTS_CA_BUNDLE and
CURL_CA_BUNDLE, and .netrc are honoured as requests honours them (its own helpers read them),
but once per host and process instead of on every send; restart workers after changing them.
Without a CA bundle variable, certificates are checked against certifi's bundle, as requests does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests.utils
import urllib3
from requests.exceptions import InvalidHeader
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from notifications.egress import Destination, EgressRefused, egress_check, egress_connect
from notifications.vendors.base import VendorError

logger = logging.getLogger(__name__)

# Keep-alive connections kept per host in one process. A prefork Celery process sends one
# message at a time; the headroom is for thread-based pools: the Procfile's 16 Celery threads
# plus the trigger listener's dispatch threads (8) may all send at once (as many as the SMTP
# sessions kept per relay, smtp.SESSIONS_IDLE_PER_RELAY).
POOL_MAXSIZE = 32
# Statuses below 500 that still mean "not accepted, try again later".
TRANSIENT_STATUSES = frozenset({408, 429})
# Statuses that blame the caller's credentials or account, not the message: the vendor's
# configuration at Beacon is wrong, and another vendor may be configured right.
MISCONFIGURED_STATUSES = frozenset({401, 403})
USER_AGENT = "Beacon-notifications/1"

_pools: dict[tuple[str, str | None, bool | str], urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


def _forget_pools_in_child() -> None:
    _pools.clear()
    _environment_for.cache_clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


@dataclass(frozen=True)
class HttpAnswer:
    """A vendor's HTTP answer, read whole."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body)


class _EgressCheckedConnectionMixin:
    """Resolves the host through the egress policy and connects to the address it checked
    (notifications/egress.py, rule 4); TLS still verifies the certificate for the host name.
    A connection to a proxy is left alone: the proxy resolves the vendor's name itself."""

    host: str
    port: int
    timeout: float | None
    source_address: tuple[str, int] | None
    proxy: Any
    socket_options: Any

    def _new_conn(self) -> Any:
        if self.proxy is not None:
            return super()._new_conn()  # type: ignore[misc]
        try:
            sock = egress_connect(self.host, self.port, self.timeout, self.source_address)
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except EgressRefused:
            raise
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        for option in self.socket_options or ():
            sock.setsockopt(*option)
        return sock


class _CheckedHTTPConnection(_EgressCheckedConnectionMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_EgressCheckedConnectionMixin, HTTPSConnection):
    pass


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


def pool_for(key: str, *, proxy: str | None = None, verify: bool | str = True) -> urllib3.PoolManager:
    """The process-wide pool manager of adapter `key` (through `proxy`, checking certificates as
    `verify` says): created once, never retries or follows redirects on its own."""
    pool_key = (key, proxy, verify)
    pool = _pools.get(pool_key)
    if pool is not None:
        return pool
    with _pools_lock:
        pool = _pools.get(pool_key)
        if pool is None:
            options: dict[str, Any] = {"num_pools": 4, "maxsize": POOL_MAXSIZE, "retries": False}
            if verify is False:
                options["cert_reqs"] = "CERT_NONE"
            else:
                bundle = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
                options["cert_reqs"] = "CERT_REQUIRED"
                options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
            if proxy:
                pool = urllib3.ProxyManager(proxy, **options)
            else:
                pool = urllib3.PoolManager(**options)
                pool.pool_classes_by_scheme = {"http": _CheckedHTTPConnectionPool, "https": _CheckedHTTPSConnectionPool}
            _pools[pool_key] = pool
    return pool


def post(
    *,
    session_key: str,
    label: str,
    url: str,
    timeout: float,
    headers: Mapping[str, str],
    data: Mapping[str, str] | bytes | None = None,
    auth: tuple[str, str] | None = None,
) -> HttpAnswer:
    """POST once and return the answer, whatever its status (see `error_for_status`).

    `data` is a form (sent url-encoded) or the body itself (the caller names its
    Content-Type). `timeout` bounds the connect and the whole wait for the answer together
    (urllib3's `total`), so a call returns within about `timeout` seconds; only a server
    trickling its answer byte by byte could stretch that. Raises a classified `VendorError` when
    no HTTP answer arrived. Exception messages name the host, never the URL's query, the headers
    or the credentials.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2] or "?"
    bounded = urllib3.Timeout(connect=timeout, read=timeout, total=timeout)
    started = time.monotonic()
    try:
        proxies, verify, netrc_auth = _environment_for(parts.scheme, parts.netloc)
        request_headers = _request_headers(headers, auth or netrc_auth, form=isinstance(data, Mapping))
        body = urlencode(list(data.items()), doseq=True) if isinstance(data, Mapping) else data
        proxy = requests.utils.select_proxy(url, proxies)
        # The scheme and a literal address here; a host name as the connection is made.
        egress_check(Destination.from_url(url), resolve=False)
        response = pool_for(session_key, proxy=proxy, verify=verify).request(
            "POST", url, body=body, headers=request_headers, timeout=bounded, redirect=False, retries=False
        )
    except EgressRefused as exc:
        # The vendor's configuration (or its DNS) is at fault: fail over, count it against the vendor.
        raise VendorError(f"{label}: egress policy refused {host} ({exc})", misconfigured=True) from exc
    except NewConnectionError as exc:  # before ConnectTimeoutError: it is one of them
        raise VendorError(f"{label}: connection failed ({host})") from exc
    except ConnectTimeoutError as exc:
        raise VendorError(f"{label}: connect timeout after {timeout:g}s ({host})") from exc
    except ProxyError as exc:  # the proxy could not be reached or refused the tunnel: nothing sent
        raise VendorError(f"{label}: connection failed through the proxy ({host})") from exc
    except ReadTimeoutError as exc:
        raise VendorError(
            f"{label}: no answer within {timeout:g}s ({host}); the vendor may have accepted the message",
            outcome_unknown=True,
        ) from exc
    except SSLError as exc:
        raise VendorError(f"{label}: TLS handshake failed ({host})") from exc
    except LocationValueError as exc:
        raise VendorError(f"{label}: invalid URL (configuration fault)", misconfigured=True) from exc
    except InvalidHeader as exc:
        raise VendorError(f"{label}: invalid header value", permanent=True) from exc
    except HTTPError as exc:
        # The connection broke after the request went out (reset, closed, a body cut short):
        # the vendor did see the request.
        raise VendorError(
            f"{label}: connection lost before an answer ({type(exc).__name__}, {host}); the vendor may have "
            "accepted the message",
            outcome_unknown=True,
        ) from exc
    logger.debug(
        "vendor http answer",
        extra={"vendor": label, "host": host, "status": response.status, "ms": _ms_since(started)},
    )
    return HttpAnswer(status_code=response.status, headers=response.headers, body=response.data)


def get(
    *, session_key: str, label: str, url: str, timeout: float, auth: tuple[str, str] | None = None
) -> HttpAnswer:
    """GET once (a read, such as a lookup: safe to repeat) and return the answer, whatever its
    status. Bounded like `post`; raises a transient `VendorError` when no answer arrived."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2] or "?"
    bounded = urllib3.Timeout(connect=timeout, read=timeout, total=timeout)
    try:
        proxies, verify, netrc_auth = _environment_for(parts.scheme, parts.netloc)
        request_headers = _request_headers({"Accept": "application/json"}, auth or netrc_auth, form=False)
        proxy = requests.utils.select_proxy(url, proxies)
        # As for `post`: the scheme and a literal address here; a host name as the connection is made.
        egress_check(Destination.from_url(url), resolve=False)
        response = pool_for(session_key, proxy=proxy, verify=verify).request(
            "GET", url, headers=request_headers, timeout=bounded, redirect=False, retries=False
        )
    except EgressRefused as exc:
        raise VendorError(f"{label}: egress policy refused {host} ({exc})", misconfigured=True) from exc
    except (HTTPError, LocationValueError, InvalidHeader) as exc:
        raise VendorError(f"{label}: no answer to a lookup ({type(exc).__name__}, {host})") from exc
    return HttpAnswer(status_code=response.status, headers=response.headers, body=response.data)


def _request_headers(
    headers: Mapping[str, str], auth: tuple[str, str] | None, *, form: bool
) -> urllib3.HTTPHeaderDict:
    """What requests would send: its default headers, the form's Content-Type, Basic auth,
    then the caller's headers (names case-insensitive, so the caller's replace a default);
    each checked for CR/LF injection (raises InvalidHeader)."""
    merged = urllib3.HTTPHeaderDict(_DEFAULT_HEADERS)
    if form:
        merged["Content-Type"] = "application/x-www-form-urlencoded"
    if auth is not None:
        merged["Authorization"] = urllib3.util.make_headers(basic_auth=f"{auth[0]}:{auth[1]}")["authorization"]
    merged.update(headers)
    for header in merged.items():
        requests.utils.check_header_validity(header)
    return merged


# requests' own defaults (Accept-Encoding, Accept, Connection: keep-alive) with Beacon's User-Agent.
_DEFAULT_HEADERS = {**requests.utils.default_headers(), "User-Agent": USER_AGENT}


@cache
def _environment_for(scheme: str, netloc: str) -> tuple[dict[str, str], bool | str, tuple[str, str] | None]:
    """(proxies, verify, netrc credentials) for URLs of this scheme and host, as requests
    itself would take them from the environment; read once per host and process."""
    url = f"{scheme}://{netloc}/"
    proxies = requests.utils.get_environ_proxies(url)
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxies, verify, requests.utils.get_netrc_auth(url)


def error_for_status(
    response: HttpAnswer,
    *,
    label: str,
    detail: str = "",
    vendor_code: str | None = None,
    permanent: bool | None = None,
    misconfigured: bool | None = None,
) -> VendorError:
    """The `VendorError` for a non-2xx answer. `permanent=None` and `misconfigured=None` apply
    the default mapping (408/429/5xx transient, 401/403 misconfigured, every other status
    permanent); a vendor module passes True/False to override it from the vendor's own error
    code."""
    status = response.status_code
    if misconfigured is None:
        misconfigured = permanent is None and status in MISCONFIGURED_STATUSES
    if permanent is None:
        permanent = not (misconfigured or status >= 500 or status in TRANSIENT_STATUSES)
    text = f"{label}: HTTP {status}" + (f" ({detail})" if detail else "")
    return VendorError(
        text, permanent=permanent, misconfigured=misconfigured, status_code=status, vendor_code=vendor_code
    )


def json_or_empty(response: HttpAnswer) -> dict[str, Any]:
    """The JSON object of the answer, or {} when it is not a JSON object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
