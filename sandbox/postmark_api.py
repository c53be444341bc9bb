"""A Postmark-compatible email API for one sandbox instance (aiohttp): what django-anymail's
Postmark backend talks to in tests and development, as it would to api.postmarkapp.com.

    POST /email   JSON {From, To, Subject, TextBody, HtmlBody, Headers: [{Name, Value}], ...}
                  header X-Postmark-Server-Token

Answers as Postmark documents (https://postmarkapp.com/developer/api/overview#error-codes):
200 `{"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}`; 401 ErrorCode 10 for a
missing or wrong server token; 422 ErrorCode 300 for an invalid `To`, 406 for an inactive
recipient (one that hard-bounced here before, or whose local part starts with `inactive`), with
Postmark's own sentences (anymail parses them); injected failures as 500 ErrorCode 500.
Accepted messages get their delivery or bounce webhook (sandbox/receipts.py) once the control API
has set the server's webhook URL (`PUT /instances/{name}/webhook`).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sandbox.receipts import postmark_webhook_schedule
from sandbox.state import InstanceState
from sandbox.twilio_api import fault_middleware

# Not a secret: the token of a fake vendor that only listens on loopback.
DEFAULT_SERVER_TOKEN = "sandbox-postmark-token"
SERVER_ID = 23
ADDRESS = re.compile(r"^(?:[^<>@\s]+@[^<>@\s]+\.[^<>@\s]+|.*<[^<>@\s]+@[^<>@\s]+\.[^<>@\s]+>)$")


def postmark_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"ErrorCode": code, "Message": message}, status=status)


def injected_error(status: int) -> web.Response:
    return postmark_error(status, status if status >= 500 else 0, "Error injected by sandbox")


def _addr_spec(address: str) -> str:
    match = re.search(r"<([^<>]+)>", address)
    return (match.group(1) if match else address).strip()


class PostmarkApi:
    def __init__(self, instance: InstanceState, server_token: str) -> None:
        self.instance = instance
        self.server_token = server_token
        # Addresses Postmark has marked inactive (hard bounce, spam complaint).
        self.inactive: set[str] = set()

    async def send(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Postmark-Server-Token")
        if not token:
            return postmark_error(401, 10, "No Account or Server API tokens were supplied in the HTTP headers. "
                                  "Please add a header for either X-Postmark-Server-Token or X-Postmark-Account-Token.")
        if token != self.server_token:
            return postmark_error(401, 10, "The Server Token you provided in the X-Postmark-Server-Token request "
                                  "header was invalid. Please verify that you are using a valid token.")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return postmark_error(422, 402, "Received invalid JSON input.")
        if not isinstance(body, dict):
            return postmark_error(422, 402, "Received invalid JSON input.")
        to = str(body.get("To") or "")
        if not to or "," in to or not ADDRESS.match(to):
            return postmark_error(422, 300, f"Invalid 'To' address: '{to}'.")
        if not ADDRESS.match(str(body.get("From") or "")):
            return postmark_error(422, 300, f"Invalid 'From' address: '{body.get('From') or ''}'.")
        recipient = _addr_spec(to).lower()
        if recipient in self.inactive or recipient.startswith("inactive"):
            return postmark_error(422, 406, "You tried to send to recipient(s) that have been marked as inactive.\n"
                                  f"Found inactive addresses: {recipient}.\nInactive recipients are ones that "
                                  "have generated a hard bounce, a spam complaint, or a manual suppression.")
        message_id = str(uuid.uuid4())
        record = self._inbox_record(body, message_id, recipient)
        record["request_id"] = _header(body, "X-Request-ID")
        self.instance.store(record, key=None, answer=None)
        if self.instance.faults.receipt_status in ("bounced", "complained"):
            self.inactive.add(recipient)
        postmark_webhook_schedule(self.instance, message_id=message_id, recipient=recipient, server_id=SERVER_ID)
        submitted = datetime.now(UTC).isoformat()
        return web.json_response({"To": to, "SubmittedAt": submitted, "MessageID": message_id, "ErrorCode": 0,
                                  "Message": "OK"})

    def _inbox_record(self, body: dict[str, Any], message_id: str, recipient: str) -> dict[str, Any]:
        return {
            "instance": self.instance.name, "kind": "postmark", "id": message_id, "to": recipient,
            "from": body.get("From"), "subject": body.get("Subject"), "text": body.get("TextBody"),
            "body": body.get("TextBody"), "html": body.get("HtmlBody"), "headers": body.get("Headers") or [],
            "message_stream": body.get("MessageStream") or "outbound",
        }


def _header(body: dict[str, Any], name: str) -> str | None:
    for header in body.get("Headers") or []:
        if isinstance(header, dict) and str(header.get("Name", "")).lower() == name.lower():
            return str(header.get("Value"))
    return None


async def not_found(request: web.Request) -> web.Response:
    return postmark_error(404, 0, f"Not found: {request.path}")


def build_postmark_app(instance: InstanceState, *, server_token: str = DEFAULT_SERVER_TOKEN) -> web.Application:
    api = PostmarkApi(instance, server_token)
    app = web.Application(middlewares=[fault_middleware(instance, error=injected_error)])
    app.router.add_post("/email", api.send)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
