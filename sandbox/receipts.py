"""Delivery receipts as the real vendors post them, a little after accepting a message.

- Twilio: status callbacks to the message's `StatusCallback`, form-encoded, signed with the
  account's auth token in `X-Twilio-Signature` (twilio_inbound.twilio_signature), with an
  `I-Twilio-Idempotency-Token`: `sent`, then `delivered` or `undelivered`/`failed` with an
  `ErrorCode` (30003 unreachable, 30005 unknown, 30006 landline, 30008 unknown carrier error...).
- Postmark: a `Delivery` or `Bounce` (or `SpamComplaint`) webhook in Postmark's JSON shape to
  the server's webhook URL, with its basic auth (set through the control API).

The instance's faults choose what they say (`receipt_status`, `receipt_error_code`), when
(`receipt_delay_ms`), and how badly they arrive (`receipt_duplicates`: each twice;
`receipt_out_of_order`: the final one first). Each post is remembered in
`InstanceState.receipts_posted` with the receiver's HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sandbox.state import InstanceState
from sandbox.twilio_inbound import twilio_signature

logger = logging.getLogger(__name__)

# The receiver must answer within this (Twilio waits 15 s).
RECEIPT_TIMEOUT_SECONDS = 15
# Tasks posting receipts: kept referenced until done (the loop holds tasks only weakly).
_pending: set[asyncio.Task] = set()


def _schedule(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _ordered(posts: list[Any], instance: InstanceState) -> list[tuple[Any, int]]:
    """(post, copy number): reversed when out of order, each twice with duplicates (a second
    callback of its own, as a carrier reporting a status twice: not a replay of the first)."""
    if instance.faults.receipt_out_of_order:
        posts = list(reversed(posts))
    copies = 2 if instance.faults.receipt_duplicates else 1
    return [(post, copy) for post in posts for copy in range(1, copies + 1)]


async def _post(instance: InstanceState, *, message_id: str, status: str, url: str, **request: Any) -> None:
    timeout = aiohttp.ClientTimeout(total=RECEIPT_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, **request) as answer:
                http_status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("sandbox %s: receipt to %s failed: %s", instance.name, url, exc)
        http_status = 0
    instance.receipts_posted.append({"message_id": message_id, "status": status, "http_status": http_status})


# --- Twilio ------------------------------------------------------------------------------------

TWILIO_FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


def twilio_callbacks_schedule(instance: InstanceState, *, resource: dict[str, Any], url: str, auth_token: str) -> None:
    """After a create: post `sent`, then the final status, to the message's StatusCallback."""
    final = TWILIO_FINAL.get(instance.faults.receipt_status)
    if final is None:
        return
    statuses = ["sent", final]
    _schedule(_twilio_post_all(instance, resource, url, auth_token, _ordered(statuses, instance)))


async def _twilio_post_all(instance: InstanceState, resource: dict[str, Any], url: str, auth_token: str,
                           statuses: list[tuple[str, int]]) -> None:
    await asyncio.sleep(instance.faults.receipt_delay_ms / 1000)
    for status, copy in statuses:
        params = {
            "MessageSid": resource["sid"], "SmsSid": resource["sid"], "SmsStatus": status, "MessageStatus": status,
            "AccountSid": resource["account_sid"], "From": resource["from"] or "", "To": resource["to"],
            "ApiVersion": "2010-04-01",
        }
        if status in ("undelivered", "failed") and instance.faults.receipt_error_code:
            params["ErrorCode"] = str(instance.faults.receipt_error_code)
        if status in ("delivered", "undelivered", "failed"):
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
            for message in instance.messages:
                if message.get("sid") == resource["sid"]:
                    message["resource"]["status"] = status
        headers = {
            "X-Twilio-Signature": twilio_signature(auth_token=auth_token, url=url, params=params),
            "I-Twilio-Idempotency-Token": f"{resource['sid']}-{status}-{copy}",
        }
        await _post(instance, message_id=resource["sid"], status=status, url=url, data=params, headers=headers)


# --- Postmark ----------------------------------------------------------------------------------

POSTMARK_RECORDS = {"delivered": "Delivery", "bounced": "Bounce", "complained": "SpamComplaint"}


def postmark_webhook_schedule(instance: InstanceState, *, message_id: str, recipient: str, server_id: int) -> None:
    """After an accepted send: post the delivery (or bounce, or complaint) webhook, if one is set."""
    record = POSTMARK_RECORDS.get(instance.faults.receipt_status)
    if record is None or instance.webhook is None:
        return
    payloads = [_postmark_payload(record, message_id=message_id, recipient=recipient, server_id=server_id)]
    _schedule(_postmark_post_all(instance, message_id, dict(instance.webhook), _ordered(payloads, instance)))


def _postmark_payload(record: str, *, message_id: str, recipient: str, server_id: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if record == "Delivery":
        return {"RecordType": "Delivery", "ServerID": server_id, "MessageStream": "outbound", "MessageID": message_id,
                "Recipient": recipient, "Tag": "", "DeliveredAt": now, "Details": "Test delivery webhook details",
                "Metadata": {}}
    bounce_type, type_code = ("HardBounce", 1) if record == "Bounce" else ("SpamComplaint", 512)
    return {"RecordType": record, "ID": secrets.randbelow(10**10), "Type": bounce_type, "TypeCode": type_code,
            "Name": "Hard bounce" if record == "Bounce" else "Spam complaint", "Tag": "", "MessageID": message_id,
            "ServerID": server_id, "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": recipient, "From": "sender@example.com", "BouncedAt": now, "DumpAvailable": False,
            "Inactive": record == "Bounce", "CanActivate": True, "Subject": "", "Content": "", "Metadata": {}}


async def _postmark_post_all(instance: InstanceState, message_id: str, webhook: dict[str, Any],
                             payloads: list[tuple[dict[str, Any], int]]) -> None:
    await asyncio.sleep(instance.faults.receipt_delay_ms / 1000)
    headers = {"Content-Type": "application/json"}
    if webhook.get("basic_auth"):
        headers["Authorization"] = "Basic " + base64.b64encode(str(webhook["basic_auth"]).encode()).decode()
    for payload, _copy in payloads:
        await _post(instance, message_id=message_id, status=payload["RecordType"], url=webhook["url"],
                    json=payload, headers=headers)
