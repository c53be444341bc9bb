"""A Twilio-compatible Messages API (2010-04-01) for one sandbox instance, on aiohttp.

Answers what Twilio answers (its public OpenAPI description, `spec/json/twilio_api_v2010.json` in
twilio/twilio-oai, against which notifications/tests/test_third_party_judges.py checks these answers):
201 with the message resource, Twilio error JSON for validation and auth failures, the magic test numbers,
and lists filtered by To, From and DateSent with PageToken paging. Like Twilio, it does not dedupe
creates: a repeated `I-Twilio-Idempotency-Token` is stored again (counted as a copy), unless the
instance is configured to dedupe. It refuses what Twilio refuses (`TwilioAccount` says which senders
and messaging services the account has): a malformed AccountSid, a From number the account does
not own, a malformed or unknown MessagingServiceSid, a relative StatusCallback, a body over
1,600 characters. Faults (latency, failures, hang) are applied by a middleware to
every request on the instance's port.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from sandbox.state import InstanceState

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
ACCOUNT_PREFIX = f"/{API_VERSION}/Accounts/{{account_sid}}"
# Not a secret: the well-known token of a fake vendor that only listens on loopback.
DEFAULT_AUTH_TOKEN = "sandbox-token"
IDEMPOTENCY_HEADERS = ("I-Twilio-Idempotency-Token", "Idempotency-Key")
# Twilio's default and maximum page sizes for list requests.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The list's query filters, kept in its paging URIs.
LIST_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
# An alphanumeric sender ID: up to 11 letters, digits and spaces, at least one letter.
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
# Twilio's limit for one (concatenated) message body, in characters (error 21617).
MAX_BODY_CHARS = 1600
# Twilio's "valid From" magic number of its test credentials: owned by every sandbox account.
DEFAULT_SENDERS = ("+15005550006",)


@dataclass(frozen=True)
class TwilioAccount:
    """What the sandbox's account owns: the From numbers (or sender IDs) it may send from, and
    its messaging services (None: any well-formed MG SID is one of them)."""

    senders: tuple[str, ...] = DEFAULT_SENDERS
    messaging_services: tuple[str, ...] | None = None

# Twilio's magic test numbers (test credentials): `To` values that fail with a known error.
MAGIC_TO_ERRORS: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}

# Twilio's error codes for HTTP-level failures; other statuses fall back to 20000 + status.
HTTP_ERROR_CODES: dict[int, tuple[int, str]] = {
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}

# GSM-7 basic character set (plus the extension table's most common characters counted as
# basic): bodies outside it are UCS-2 encoded, which shrinks a segment from 160 to 70 chars.
GSM7_CHARS = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def twilio_error(code: int, message: str, status: int, **extra: Any) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }
    return web.json_response(body, status=status)


def http_error(status: int) -> web.Response:
    code, message = HTTP_ERROR_CODES.get(status, (20000 + status, "Error injected by sandbox"))
    return twilio_error(code, message, status)


def num_segments(body: str) -> int:
    """How many SMS segments Twilio bills for `body` (single: 160/70, concatenated: 153/67)."""
    gsm = all(ch in GSM7_CHARS for ch in body)
    single, multi = (160, 153) if gsm else (70, 67)
    if len(body) <= single:
        return 1
    return -(-len(body) // multi)


def rfc2822_now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def message_resource(account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    """The message resource of a freshly created (queued) outbound message."""
    sid = "SM" + secrets.token_hex(16)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    now = rfc2822_now()
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": form["Body"],
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": str(num_segments(form["Body"])),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form["To"],
        "uri": f"{uri}.json",
    }


def validate_create(form: dict[str, str], account: TwilioAccount) -> web.Response | None:
    """Twilio's answer to an invalid create request, in Twilio's order of checks; None if valid."""
    to = form.get("To", "")
    if not to:
        return twilio_error(21604, "A 'To' phone number is required.", 400)
    if not E164.match(to):
        return twilio_error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
    sender, service_sid = form.get("From", ""), form.get("MessagingServiceSid", "")
    if not sender and not service_sid:
        return twilio_error(21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.", 400)
    if service_sid and not (
        MESSAGING_SERVICE_SID.match(service_sid)
        and (account.messaging_services is None or service_sid in account.messaging_services)
    ):
        return twilio_error(21701, f"The Messaging Service Sid {service_sid} is invalid.", 400)
    if sender and not (E164.match(sender) or ALPHANUMERIC_SENDER.match(sender)):
        return twilio_error(
            21212, f"The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric sender ID.", 400
        )
    if sender and sender not in account.senders:
        return twilio_error(
            21606,
            f"The 'From' phone number provided ({sender}) is not a valid, message-capable Twilio phone number "
            "for this account.",
            400,
        )
    body = form.get("Body", "")
    if not body:
        return twilio_error(21602, "Message body is required.", 400)
    if len(body) > MAX_BODY_CHARS:
        return twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
    callback = form.get("StatusCallback")
    if callback is not None and not absolute_callback(callback):
        return twilio_error(21609, f"The StatusCallback URL {callback} is not a valid URL.", 400)
    if to in MAGIC_TO_ERRORS:
        code, message = MAGIC_TO_ERRORS[to]
        return twilio_error(code, message, 400)
    return None


def absolute_callback(url: str) -> bool:
    """Twilio calls back only absolute http(s) URLs with a valid host (no underscores)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "_" not in (parts.hostname or "")


def drop_connection(request: web.Request) -> web.Response:
    """Reset the request's connection. The returned response is never sent: there is no socket."""
    transport = request.transport
    if transport is not None:
        # SO_LINGER 0 makes the close a reset, like a vendor whose process died mid-request.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.abort()
    return web.Response(status=503)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fault_middleware(instance: InstanceState) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def apply_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        instance.counters.requests += 1
        if instance.faults.outage:
            # A keep-alive connection that survived the socket close: a dead vendor answers nothing.
            return drop_connection(request)
        if instance.hanging:
            await instance.wait_until_hang_over()
            return drop_connection(request)
        if instance.faults.latency_ms:
            await asyncio.sleep(instance.faults.latency_ms / 1000)
        if instance.roll_failure():
            return http_error(instance.faults.error_status)
        response = await handler(request)
        if request.method == "POST" and instance.faults.answer_delay_ms:
            # Stored already: a client that gives up now leaves a message it does not know of.
            await asyncio.sleep(instance.faults.answer_delay_ms / 1000)
        return response

    return apply_faults


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(login, password) of a Basic Authorization header; None if absent or malformed.

    Parsed by hand: aiohttp 3.14 deprecates BasicAuth.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


def authenticate(request: web.Request, auth_token: str | None) -> web.Response | None:
    """401 with Twilio's 20003 unless basic auth is `AccountSid:auth_token`; None if it is."""
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if credentials is not None:
        login, password = credentials
        # A malformed AccountSid names no account: its credentials cannot be right.
        account_ok = ACCOUNT_SID.match(login) is not None and login == request.match_info["account_sid"]
        if account_ok and (auth_token is None or password == auth_token):
            return None
    response = twilio_error(20003, "Authenticate", 401, detail="Your AccountSid or AuthToken was incorrect.")
    response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


class TwilioApi:
    """Request handlers of one instance."""

    def __init__(self, instance: InstanceState, auth_token: str | None, account: TwilioAccount) -> None:
        self.instance = instance
        self.auth_token = auth_token
        self.account = account

    async def create(self, request: web.Request) -> web.Response:
        if denied := authenticate(request, self.auth_token):
            return denied
        key = next((request.headers[h] for h in IDEMPOTENCY_HEADERS if h in request.headers), None)
        if (previous := self.instance.previous_answer(key)) is not None:
            return web.json_response(previous, status=201)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if invalid := validate_create(form, self.account):
            return invalid
        resource = message_resource(request.match_info["account_sid"], form)
        # Answered `queued`; stored as handed to the carrier at once, so fetch and list (and the
        # DateSent filters) see it as Twilio does a few seconds later.
        stored = {**resource, "status": "sent", "date_sent": resource["date_created"]}
        record = self._inbox_record(stored, form, key)
        record["request_id"] = request.headers.get("X-Request-ID")
        self.instance.store(record, key=key, answer=resource)
        logger.debug("sandbox %s accepted %s", self.instance.name, resource["sid"])
        return web.json_response(resource, status=201)

    async def fetch(self, request: web.Request) -> web.Response:
        if denied := authenticate(request, self.auth_token):
            return denied
        sid, account_sid = request.match_info["sid"], request.match_info["account_sid"]
        resource = next((r for r in self._resources() if r["sid"] == sid), None)
        if resource is None or resource["account_sid"] != account_sid:
            return twilio_error(20404, f"The requested resource {request.path} was not found", 404)
        return web.json_response(resource)

    async def list(self, request: web.Request) -> web.Response:
        """Messages of the account, newest first, filtered as Twilio filters them (`To`, `From`,
        `DateSent`, `DateSent<`, `DateSent>`) and paged by `PageSize` and `PageToken`."""
        if denied := authenticate(request, self.auth_token):
            return denied
        account_sid = request.match_info["account_sid"]
        query = request.query
        try:
            page = max(int(query.get("Page", 0)), 0)
            page_size = min(max(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), 1), MAX_PAGE_SIZE)
        except ValueError:
            return twilio_error(20001, "Invalid paging parameter", 400)
        try:
            sent_after, sent_before = date_sent_bounds(query)
        except ValueError as exc:
            return twilio_error(20001, str(exc), 400)
        # Twilio lists newest first.
        matching = [
            r
            for r, sent_at in reversed(self._resources_with_sent_time())
            if r["account_sid"] == account_sid
            and query.get("To", r["to"]) == r["to"]
            and query.get("From", r["from"]) == r["from"]
            and (sent_after is None or sent_at >= sent_after)
            and (sent_before is None or sent_at <= sent_before)
        ]
        filters = {k: v for k, v in query.items() if k in LIST_FILTERS}
        token = query.get("PageToken")
        if token is None:
            start = page * page_size
        else:
            after = next((i for i, r in enumerate(matching) if f"PA{r['sid']}" == token), None)
            if after is None:
                return twilio_error(20001, "Invalid PageToken", 400)
            start = after + 1
        return web.json_response(list_page(request.path, filters, matching, page, page_size, start))

    def _resources(self) -> list[dict[str, Any]]:
        # The inbox is the one store, so clearing it (control API) also empties Twilio's lists.
        return [m["resource"] for m in self.instance.messages]

    def _resources_with_sent_time(self) -> list[tuple[dict[str, Any], datetime]]:
        # Twilio's `date_sent` has whole seconds, and so do its filters.
        return [
            (m["resource"], datetime.fromtimestamp(int(m["received_at"]), UTC)) for m in self.instance.messages
        ]

    def _inbox_record(self, resource: dict[str, Any], form: dict[str, str], key: str | None) -> dict[str, Any]:
        return {
            "instance": self.instance.name,
            "kind": "twilio",
            "id": resource["sid"],
            "sid": resource["sid"],
            "to": resource["to"],
            "from": resource["from"],
            "messaging_service_sid": resource["messaging_service_sid"],
            "subject": None,
            "body": resource["body"],
            "text": resource["body"],
            "html": None,
            "num_segments": int(resource["num_segments"]),
            "status_callback": form.get("StatusCallback"),
            "idempotency_key": key,
            "resource": resource,
        }


def list_page(
    path: str, filters: dict[str, str], items: list[dict[str, Any]], page: int, page_size: int, start: int
) -> dict[str, Any]:
    """One page of a Twilio list answer from `items[start:]`, with Twilio's paging fields (which
    keep the filters; the next page is named by a PageToken, as Twilio names it)."""
    chunk = items[start : start + page_size]

    def page_uri(number: int, token: str | None = None) -> str:
        params: dict[str, Any] = {**filters, "PageSize": page_size, "Page": number}
        if token is not None:
            params["PageToken"] = token
        return f"{path}?{urlencode(params)}"

    more = start + page_size < len(items)
    return {
        "messages": chunk,
        "start": start,
        "end": start + max(len(chunk) - 1, 0),
        "page": page,
        "page_size": page_size,
        "uri": page_uri(page),
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1, f"PA{chunk[-1]['sid']}") if more and chunk else None,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
    }


def parse_date_sent(value: str) -> tuple[datetime, datetime]:
    """The first and last instant a `DateSent` filter value names: a whole GMT day for
    `YYYY-MM-DD`, one second for a date-time (ISO 8601, `YYYY-MM-DD HH:MM:SS[.fff]` or RFC 2822;
    GMT when no zone is given). Raises ValueError for anything else."""
    text = value.strip()
    if DATE_ONLY.match(text):
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return day, day + timedelta(days=1) - timedelta(microseconds=1)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid DateSent value: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment, moment + timedelta(seconds=1) - timedelta(microseconds=1)


def date_sent_bounds(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """(earliest, latest) `date_sent` the query admits: `DateSent` (that day or second),
    `DateSent>` (on or after), `DateSent<` (on or before); None where unbounded."""
    lower: datetime | None = None
    upper: datetime | None = None
    if "DateSent" in query:
        lower, upper = parse_date_sent(query["DateSent"])
    if "DateSent>" in query:
        first, _ = parse_date_sent(query["DateSent>"])
        lower = max(lower, first) if lower else first
    if "DateSent<" in query:
        _, last = parse_date_sent(query["DateSent<"])
        upper = min(upper, last) if upper else last
    return lower, upper


async def not_found(request: web.Request) -> web.Response:
    return twilio_error(20404, f"The requested resource {request.path} was not found", 404)


def build_twilio_app(
    instance: InstanceState, *, auth_token: str | None = DEFAULT_AUTH_TOKEN, account: TwilioAccount | None = None
) -> web.Application:
    """The aiohttp application of one Twilio-compatible instance. `auth_token=None` skips the
    password check (the AccountSid must still be well-formed)."""
    api = TwilioApi(instance, auth_token, account or TwilioAccount())
    app = web.Application(middlewares=[fault_middleware(instance)])
    app.router.add_post(f"{ACCOUNT_PREFIX}/Messages.json", api.create)
    app.router.add_get(f"{ACCOUNT_PREFIX}/Messages.json", api.list)
    app.router.add_get(f"{ACCOUNT_PREFIX}/Messages/{{sid}}.json", api.fetch)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
