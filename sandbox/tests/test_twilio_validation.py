"""The sandbox refuses what Twilio refuses, judged with the official `twilio` client (and raw
HTTP where the client would hide the wire): formats, owned senders, body length, callbacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tests.helpers import RECIPIENT, SENDER, post_message, twilio_client
from sandbox.twilio_api import DEFAULT_AUTH_TOKEN, TwilioAccount

SERVICE_SID = "MG" + "0123456789abcdef" * 2
OTHER_SENDER = "+14155550999"


@pytest.fixture(scope="module")
def accounts() -> Iterator[SandboxHandle]:
    """`sms-primary` with Twilio's defaults; `sms-owned` owns one number, one sender ID and one service."""
    owned = TwilioAccount(senders=(OTHER_SENDER, "BeaconShop"), messaging_services=(SERVICE_SID,))
    instances = (InstanceConfig("sms-primary", "twilio"), InstanceConfig("sms-owned", "twilio", twilio_account=owned))
    with start_sandbox(instances=instances) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(accounts: SandboxHandle) -> None:
    accounts.control.reset()


def refusal(client: Client, **params: str) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(**params)
    return caught.value


def test_a_valid_message_is_accepted(accounts: SandboxHandle) -> None:
    message = twilio_client(accounts.url("sms-primary")).messages.create(
        to=RECIPIENT, from_=SENDER, body="x" * 1600, status_callback="https://shop.example/twilio/status"
    )

    assert message.status == "queued" and message.sid.startswith("SM")
    [stored] = accounts.control.messages("sms-primary")
    assert stored["status_callback"] == "https://shop.example/twilio/status"
    assert len(stored["body"]) == 1600


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"to": RECIPIENT, "from_": "+14155550000", "body": "hi"}, 400, 21606),  # not the account's number
        ({"to": RECIPIENT, "from_": "not a number!", "body": "hi"}, 400, 21212),
        ({"to": RECIPIENT, "messaging_service_sid": "MG123", "body": "hi"}, 400, 21701),
        ({"to": RECIPIENT, "from_": SENDER, "body": "x" * 1601}, 400, 21617),
        ({"to": RECIPIENT, "from_": SENDER, "body": "hi", "status_callback": "/twilio/status"}, 400, 21609),
        ({"to": RECIPIENT, "from_": SENDER, "body": "hi", "status_callback": "ftp://shop.example/s"}, 400, 21609),
        ({"to": RECIPIENT, "from_": SENDER, "body": "hi", "status_callback": "https://my_shop.example/s"}, 400, 21609),
    ],
)
def test_twilio_refusals_reach_the_official_client_with_twilios_codes(
    accounts: SandboxHandle, params: dict[str, str], status: int, code: int
) -> None:
    error = refusal(twilio_client(accounts.url("sms-primary")), **params)

    assert (error.status, error.code) == (status, code)
    assert accounts.control.messages("sms-primary") == []


def test_each_account_owns_its_senders_and_services(accounts: SandboxHandle) -> None:
    owned = twilio_client(accounts.url("sms-owned"))

    owned.messages.create(to=RECIPIENT, from_=OTHER_SENDER, body="number")
    owned.messages.create(to=RECIPIENT, from_="BeaconShop", body="sender id")
    owned.messages.create(to=RECIPIENT, messaging_service_sid=SERVICE_SID, body="service")
    default_sender = refusal(owned, to=RECIPIENT, from_=SENDER, body="not this account's")
    other_service = refusal(owned, to=RECIPIENT, messaging_service_sid="MG" + "f" * 32, body="unknown service")

    assert [m["body"] for m in accounts.control.messages("sms-owned")] == ["number", "sender id", "service"]
    assert (default_sender.code, other_service.code) == (21606, 21701)


def test_a_malformed_account_sid_cannot_authenticate(accounts: SandboxHandle) -> None:
    client = Client("AC123", DEFAULT_AUTH_TOKEN)
    client.api.base_url = accounts.url("sms-primary")

    error = refusal(client, to=RECIPIENT, from_=SENDER, body="hi")

    assert (error.status, error.code) == (401, 20003)


def test_errors_have_twilios_json_shape(accounts: SandboxHandle) -> None:
    status, body = post_message(accounts.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "x" * 1601})

    assert status == 400
    assert body == {
        "code": 21617,
        "message": "The concatenated message body exceeds the 1600 character limit.",
        "more_info": "https://www.twilio.com/docs/errors/21617",
        "status": 400,
    }


def test_a_recipient_fault_is_reported_once_the_configuration_is_valid(accounts: SandboxHandle) -> None:
    error = refusal(twilio_client(accounts.url("sms-primary")), to="+15005550004", from_=SENDER, body="hi")

    assert (error.status, error.code) == (400, 21610)
