"""Helpers shared by the sandbox's tests: real clients (twilio, urllib, smtplib) pointed at it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from sandbox.twilio_api import DEFAULT_AUTH_TOKEN

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SENDER = "+15005550006"
RECIPIENT = "+14155550123"
# Client-side timeout of the twilio client in these tests: long enough for injected latency,
# short enough that a hang test does not stall the suite.
CLIENT_TIMEOUT_SECONDS = 2.0


def twilio_client(url: str, *, token: str = DEFAULT_AUTH_TOKEN, timeout: float = CLIENT_TIMEOUT_SECONDS) -> Client:
    """The official twilio client, routed to a sandbox instance instead of api.twilio.com."""
    client = Client(ACCOUNT_SID, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = url
    return client


def post_message(url: str, form: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST a create request with urllib, to see the raw status and JSON body."""
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Basic {credentials}", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def receipt(to: str = "ada@example.com", message_id: str | None = None) -> EmailMessage:
    """A multipart (text + html) email like the ones Beacon sends."""
    message = EmailMessage()
    message["From"] = "Beacon <noreply@beacon.example>"
    message["To"] = to
    message["Subject"] = "Your receipt"
    message["Message-ID"] = message_id or make_msgid(domain="beacon.example")
    message.set_content("Thanks for your order.")
    message.add_alternative("<p>Thanks for your <b>order</b>.</p>", subtype="html")
    return message
