"""Shared HTTP plumbing for the HTTP adapters: one POST, always bounded in time, failures classified.

Classification (the vendor modules only refine the 4xx case):

| what happened                                      | VendorError                     |
|----------------------------------------------------|---------------------------------|
| connection refused, DNS failure, connect timeout   | transient (not accepted)        |
| TLS handshake failure                              | transient (not accepted)        |
| read timeout after the request was sent            | outcome_unknown (maybe accepted)|
| connection reset/closed while waiting for answer   | outcome_unknown (maybe accepted)|
| HTTP 408, 429, 5xx                                 | transient                       |
| other 4xx, 3xx (we never follow redirects)         | permanent                       |
| malformed URL or header (our configuration)        | permanent                       |

Sessions: one `requests.Session` per adapter key per process, so keep-alive connections are
reused across sends (hundreds per second would otherwise pay a TCP+TLS handshake each). The
table is cleared in a forked child: a child must not share its parent's sockets.

Environment: the proxy variables (HTTPS_PROXY, NO_PROXY, ...), REQUESTS_CA_BUNDLE and .netrc
are honoured as requests honours them, but read once per host and process instead of on every
send (requests scans the whole environment per request); restart workers after changing them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from notifications.vendors.base import VendorError

logger = logging.getLogger(__name__)

# Keep-alive connections kept per host in one process. A prefork Celery process sends one
# message at a time; the headroom is for thread-based pools.
POOL_MAXSIZE = 16
# Statuses below 500 that still mean "not accepted, try again later".
TRANSIENT_STATUSES = frozenset({408, 429})
USER_AGENT = "Beacon-notifications/1"

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def _forget_sessions_in_child() -> None:
    _sessions.clear()
    _environment_for.cache_clear()


os.register_at_fork(after_in_child=_forget_sessions_in_child)


def session_for(key: str) -> requests.Session:
    """The process-wide session of adapter `key`: created once, never retries on its own."""
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            # Default HTTPAdapter retries: none (Retry(0, read=False)); the caller owns retries.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_MAXSIZE)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            # The environment is applied per host by `_environment_for` instead.
            session.trust_env = False
            _sessions[key] = session
    return session


def post(
    *,
    session_key: str,
    label: str,
    url: str,
    timeout: float,
    headers: Mapping[str, str],
    data: Mapping[str, str] | bytes | None = None,
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    """POST once and return the response, whatever its status (see `error_for_status`).

    `timeout` bounds the connect and the whole wait for the answer together (urllib3's
    `total`), so a call returns within about `timeout` seconds; only a server trickling its
    answer byte by byte could stretch that. Raises a classified `VendorError` when no HTTP
    answer arrived. Exception messages name the host, never the URL's query, the headers or
    the credentials.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2] or "?"
    bounded = urllib3.Timeout(connect=timeout, read=timeout, total=timeout)
    proxies, verify, netrc_auth = _environment_for(parts.scheme, parts.netloc)
    started = time.monotonic()
    try:
        response = session_for(session_key).post(
            url, data=data, headers=dict(headers), auth=auth or netrc_auth, timeout=bounded, allow_redirects=False,
            proxies=proxies, verify=verify,
        )
    except requests.exceptions.ConnectTimeout as exc:
        raise VendorError(f"{label}: connect timeout after {timeout:g}s ({host})") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise VendorError(
            f"{label}: no answer within {timeout:g}s ({host}); the vendor may have accepted the message",
            outcome_unknown=True,
        ) from exc
    except requests.exceptions.SSLError as exc:
        raise VendorError(f"{label}: TLS handshake failed ({host})") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
    ) as exc:
        raise VendorError(f"{label}: invalid URL (configuration fault)", permanent=True) from exc
    except requests.exceptions.InvalidHeader as exc:
        raise VendorError(f"{label}: invalid header value", permanent=True) from exc
    except requests.exceptions.ConnectionError as exc:
        if _never_connected(exc):
            raise VendorError(f"{label}: connection failed ({host})") from exc
        raise VendorError(
            f"{label}: connection lost before an answer ({host}); the vendor may have accepted the message",
            outcome_unknown=True,
        ) from exc
    except requests.exceptions.RequestException as exc:
        # E.g. a body cut short: the vendor started answering, so it did see the request.
        raise VendorError(
            f"{label}: broken answer ({type(exc).__name__}, {host}); the vendor may have accepted the message",
            outcome_unknown=True,
        ) from exc
    logger.debug(
        "vendor http answer",
        extra={"vendor": label, "host": host, "status": response.status_code, "ms": _ms_since(started)},
    )
    return response


@cache
def _environment_for(scheme: str, netloc: str) -> tuple[dict[str, str], bool | str, tuple[str, str] | None]:
    """(proxies, verify, netrc credentials) for URLs of this scheme and host, as requests
    itself would take them from the environment; read once per host and process."""
    url = f"{scheme}://{netloc}/"
    proxies = requests.utils.get_environ_proxies(url)
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxies, verify, requests.utils.get_netrc_auth(url)


def error_for_status(
    response: requests.Response,
    *,
    label: str,
    detail: str = "",
    vendor_code: str | None = None,
    permanent: bool | None = None,
) -> VendorError:
    """The `VendorError` for a non-2xx answer. `permanent=None` applies the default mapping
    (408/429/5xx transient, everything else permanent); a vendor module passes True/False to
    override it from the vendor's own error code."""
    status = response.status_code
    if permanent is None:
        permanent = not (status >= 500 or status in TRANSIENT_STATUSES)
    text = f"{label}: HTTP {status}" + (f" ({detail})" if detail else "")
    return VendorError(text, permanent=permanent, status_code=status, vendor_code=vendor_code)


def json_or_empty(response: requests.Response) -> dict[str, Any]:
    """The JSON object of the answer, or {} when it is not a JSON object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the failure happened while opening the connection (nothing was sent)."""
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, MaxRetryError) and isinstance(inner.reason, NewConnectionError)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
