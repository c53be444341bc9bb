from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from sandbox.testing import SandboxHandle
from sandbox.tests.helpers import ACCOUNT_SID, RECIPIENT, SENDER, post_message, twilio_client

RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")


def test_official_client_creates_a_queued_message_in_the_sandbox(sandbox: SandboxHandle, sms: Client) -> None:
    message = sms.messages.create(
        to=RECIPIENT, from_=SENDER, body="Your order shipped", status_callback="http://cb.example/s"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.status, message.to, message.from_, message.body) == (
        "queued",
        RECIPIENT,
        SENDER,
        "Your order shipped",
    )
    assert message.direction == "outbound-api"
    assert message.error_code is None and message.date_sent is None
    inbox = sandbox.control.messages("sms-primary")
    assert [(m["sid"], m["to"], m["body"], m["status_callback"]) for m in inbox] == [
        (message.sid, RECIPIENT, "Your order shipped", "http://cb.example/s")
    ]
    assert sandbox.control.messages("sms-fallback") == []


def test_created_resource_has_twilios_fields_and_formats(sandbox: SandboxHandle) -> None:
    status, body = post_message(sandbox.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "hi"})

    assert status == 201
    assert body["account_sid"] == ACCOUNT_SID
    assert body["api_version"] == "2010-04-01"
    assert RFC2822.match(body["date_created"]) and RFC2822.match(body["date_updated"])
    assert (body["num_segments"], body["num_media"], body["price"], body["price_unit"]) == ("1", "0", None, "USD")
    assert body["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{body['sid']}.json"
    assert body["subresource_uris"]["media"].endswith(f"/Messages/{body['sid']}/Media.json")
    assert body["messaging_service_sid"] is None and body["error_message"] is None


def test_messaging_service_sid_may_replace_from(sms: Client) -> None:
    message = sms.messages.create(to=RECIPIENT, messaging_service_sid="MG" + "a" * 32, body="hi")

    assert message.from_ is None
    assert message.messaging_service_sid == "MG" + "a" * 32


@pytest.mark.parametrize(
    ("body", "segments"),
    [("a" * 160, "1"), ("a" * 161, "2"), ("é" * 160, "1"), ("👍" * 70, "1"), ("👍" * 71, "2")],
)
def test_num_segments_follows_sms_encoding_limits(sms: Client, body: str, segments: str) -> None:
    assert sms.messages.create(to=RECIPIENT, from_=SENDER, body=body).num_segments == segments


def test_fetch_and_list_return_created_messages_with_paging(sms: Client) -> None:
    sids = [sms.messages.create(to=RECIPIENT, from_=SENDER, body=f"m{i}").sid for i in range(5)]
    sms.messages.create(to="+14155550999", from_=SENDER, body="other")

    assert sms.messages(sids[0]).fetch().body == "m0"
    listed = sms.messages.list(to=RECIPIENT, page_size=2)
    assert [m.sid for m in listed] == list(reversed(sids))  # newest first, across 3 pages
    page = sms.messages.page(page_size=2)
    assert page.next_page_url is not None


def test_fetch_of_unknown_sid_is_twilio_20404(sms: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        sms.messages("SM" + "0" * 32).fetch()

    assert (caught.value.status, caught.value.code) == (404, 20404)


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"To": "4155550123", "From": SENDER, "Body": "x"}, 400, 21211),
        ({"To": "+15005550001", "From": SENDER, "Body": "x"}, 400, 21211),
        ({"To": "+15005550009", "From": SENDER, "Body": "x"}, 400, 21614),
        ({"To": "+15005550004", "From": SENDER, "Body": "x"}, 400, 21610),
        ({"To": RECIPIENT, "From": SENDER}, 400, 21602),
        ({"To": RECIPIENT, "Body": "x"}, 400, 21603),
        ({"From": SENDER, "Body": "x"}, 400, 21604),
    ],
)
def test_invalid_requests_get_twilios_error_answer(
    sandbox: SandboxHandle, form: dict[str, str], status: int, code: int
) -> None:
    answer = post_message(sandbox.url("sms-primary"), form)

    assert answer[0] == status
    assert answer[1]["code"] == code
    assert answer[1]["status"] == status
    assert answer[1]["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert answer[1]["message"]
    assert sandbox.control.messages("sms-primary") == []


def test_official_client_raises_twilio_errors_with_their_codes(sms: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        sms.messages.create(to="+15005550004", from_=SENDER, body="x")

    assert (caught.value.status, caught.value.code) == (400, 21610)


def test_wrong_auth_token_is_rejected_with_20003(sandbox: SandboxHandle) -> None:
    client = twilio_client(sandbox.url("sms-primary"), token="wrong-token")

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=RECIPIENT, from_=SENDER, body="x")

    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert sandbox.control.messages("sms-primary") == []


def test_username_must_match_the_account_in_the_path(sandbox: SandboxHandle) -> None:
    credentials = base64.b64encode(b"ACsomeoneelse:sandbox-token").decode()
    request = urllib.request.Request(
        f"{sandbox.url('sms-primary')}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=b"To=%2B14155550123&From=%2B15005550006&Body=x",
        headers={"Authorization": f"Basic {credentials}"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)

    assert caught.value.code == 401
    assert json.loads(caught.value.read())["code"] == 20003
