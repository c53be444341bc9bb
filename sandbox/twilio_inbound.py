"""Inbound SMS as Twilio delivers them: a form POST to the receiver's webhook URL, signed with
the account's auth token in `X-Twilio-Signature` (HMAC-SHA1 over the URL followed by every
parameter name and value in name order, base64), as Twilio documents it ("Webhooks security").

Written here from that description (the sandbox shares no code with Beacon or the twilio
package), and reached through the control API:

    POST /instances/{name}/inbound   {"from": "+447911123456", "body": "STOP", "url": "http://…/webhooks/twilio/sms/",
                                      "to"?: "+15005550006", "account_sid"?: "AC…", "auth_token"?: "…"}
    -> {"status": <the webhook's HTTP status>, "body": <its answer, e.g. TwiML>}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import aiohttp
from aiohttp import web

from sandbox.twilio_api import DEFAULT_AUTH_TOKEN

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_TO = "+15005550006"
# The receiver must answer within this (Twilio itself waits 15 s).
WEBHOOK_TIMEOUT_SECONDS = 15


def twilio_signature(*, auth_token: str, url: str, params: dict[str, str]) -> str:
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


async def inbound_sms_deliver(request: web.Request, body: dict) -> web.Response:
    """Send one inbound SMS to `body["url"]` as Twilio would; answer with what the webhook said."""
    for field in ("from", "body", "url"):
        if not isinstance(body.get(field), str):
            raise web.HTTPBadRequest(reason=f"'{field}' (a string) is required")
    sid = "SM" + uuid.uuid4().hex
    params = {
        "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
        "AccountSid": body.get("account_sid", DEFAULT_ACCOUNT_SID),
        "From": body["from"], "To": body.get("to", DEFAULT_TO), "Body": body["body"],
        "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }
    signature = twilio_signature(auth_token=body.get("auth_token", DEFAULT_AUTH_TOKEN), url=body["url"], params=params)
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(body["url"], data=params, headers={"X-Twilio-Signature": signature}) as answer:
            return web.json_response({"status": answer.status, "body": await answer.text()})
