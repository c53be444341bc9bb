"""The sandbox dedupes nothing real vendors do not, counts every copy that reaches it, and lists
Twilio messages with Twilio's filters (To, From, DateSent and its < > variants) and PageToken paging."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from twilio.rest import Client

from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tests.helpers import RECIPIENT, SENDER, post_message, receipt

TOKEN = {"I-Twilio-Idempotency-Token": "beacon-notif-42"}


def test_a_repeated_twilio_token_is_stored_again_as_twilio_would(sandbox: SandboxHandle) -> None:
    url = sandbox.url("sms-primary")
    form = {"To": RECIPIENT, "From": SENDER, "Body": "once?"}

    first = post_message(url, form, TOKEN)
    second = post_message(url, form, TOKEN)

    assert first[0] == second[0] == 201
    assert first[1]["sid"] != second[1]["sid"]
    inbox = sandbox.control.messages("sms-primary")
    assert [(m["idempotency_key"], m["copy"]) for m in inbox] == [("beacon-notif-42", 1), ("beacon-notif-42", 2)]
    counters = sandbox.control.instance("sms-primary")["counters"]
    assert (counters["accepted"], counters["duplicates_received"], counters["duplicates_suppressed"]) == (2, 1, 0)
    assert sandbox.control.arrivals("sms-primary") == {"beacon-notif-42": 2}


def test_a_repeated_message_id_is_stored_again_as_relays_do(sandbox: SandboxHandle) -> None:
    message = receipt()
    with smtplib.SMTP("127.0.0.1", sandbox.port("smtp-primary"), timeout=5) as smtp:
        smtp.send_message(message)
        smtp.send_message(message)

    inbox = sandbox.control.messages("smtp-primary")
    assert [m["copy"] for m in inbox] == [1, 2]
    assert sandbox.control.arrivals("smtp-primary") == {message["Message-ID"]: 2}
    assert sandbox.control.instance("smtp-primary")["counters"]["duplicates_received"] == 1


def test_reset_forgets_the_arrival_counts(sandbox: SandboxHandle) -> None:
    post_message(sandbox.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "x"}, TOKEN)
    sandbox.control.clear("sms-primary")

    post_message(sandbox.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "x"}, TOKEN)

    assert [m["copy"] for m in sandbox.control.messages("sms-primary")] == [1]


@pytest.fixture(scope="module")
def deduping() -> Iterator[SandboxHandle]:
    instances = (InstanceConfig("sms-dedupe", "twilio", dedupe=True), InstanceConfig("smtp-dedupe", "smtp", dedupe=True))
    with start_sandbox(instances=instances) as handle:
        yield handle


def test_an_instance_configured_to_dedupe_replays_the_first_answer(deduping: SandboxHandle) -> None:
    url = deduping.url("sms-dedupe")
    form = {"To": RECIPIENT, "From": SENDER, "Body": "once"}

    first = post_message(url, form, TOKEN)
    second = post_message(url, form, TOKEN)

    assert first == second
    assert len(deduping.control.messages("sms-dedupe")) == 1
    counters = deduping.control.instance("sms-dedupe")["counters"]
    assert (counters["accepted"], counters["duplicates_suppressed"], counters["duplicates_received"]) == (1, 1, 0)
    assert deduping.control.instance("sms-dedupe")["dedupe"] is True


def test_an_smtp_instance_configured_to_dedupe_answers_250_and_stores_once(deduping: SandboxHandle) -> None:
    message = receipt()
    with smtplib.SMTP("127.0.0.1", deduping.port("smtp-dedupe"), timeout=5) as smtp:
        smtp.send_message(message)
        assert smtp.send_message(message) == {}

    assert len(deduping.control.messages("smtp-dedupe")) == 1
    assert deduping.control.instance("smtp-dedupe")["counters"]["duplicates_suppressed"] == 1


def test_no_default_instance_dedupes(sandbox: SandboxHandle) -> None:
    assert [i["dedupe"] for i in sandbox.control.instances()] == [False] * 6


# -- Twilio list filters ---------------------------------------------------------------------


def test_list_filters_by_to_and_from(sms: Client) -> None:
    mine = sms.messages.create(to=RECIPIENT, from_=SENDER, body="mine").sid
    sms.messages.create(to="+14155550999", from_=SENDER, body="other recipient")
    sms.messages.create(to=RECIPIENT, messaging_service_sid="MG" + "a" * 32, body="other sender")

    assert [m.sid for m in sms.messages.list(to=RECIPIENT, from_=SENDER)] == [mine]
    assert len(sms.messages.list(to=RECIPIENT)) == 2
    assert len(sms.messages.list(from_=SENDER)) == 2


def test_listed_messages_carry_their_date_sent(sms: Client) -> None:
    sms.messages.create(to=RECIPIENT, from_=SENDER, body="hi")

    [listed] = sms.messages.list(to=RECIPIENT)

    assert listed.status == "sent"
    assert abs((listed.date_sent - datetime.now(UTC)).total_seconds()) < 5


def test_date_sent_filters_by_day_and_by_instant(sms: Client) -> None:
    sms.messages.create(to=RECIPIENT, from_=SENDER, body="today")
    now = datetime.now(UTC)
    tomorrow, yesterday = now + timedelta(days=1), now - timedelta(days=1)

    # The official client sends a datetime as DateSent (exact), DateSent> and DateSent<.
    assert len(sms.messages.list(to=RECIPIENT, date_sent_after=yesterday)) == 1
    assert sms.messages.list(to=RECIPIENT, date_sent_after=tomorrow) == []
    assert len(sms.messages.list(to=RECIPIENT, date_sent_before=tomorrow)) == 1
    assert sms.messages.list(to=RECIPIENT, date_sent_before=yesterday) == []


@pytest.mark.parametrize(
    ("name", "value", "found"),
    [
        ("DateSent", "{today}", 1),
        ("DateSent", "{yesterday}", 0),
        ("DateSent>", "{today}", 1),
        ("DateSent>", "{tomorrow}", 0),
        ("DateSent<", "{today}", 1),
        ("DateSent<", "{yesterday}", 0),
        ("DateSent>", "{a_minute_ago_rfc2822}", 1),
        ("DateSent>", "{in_a_minute_iso}", 0),
        ("DateSent<", "{a_minute_ago_iso}", 0),
    ],
)
def test_date_sent_accepts_twilios_formats(sandbox: SandboxHandle, name: str, value: str, found: int) -> None:
    post_message(sandbox.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "x"})
    now = datetime.now(UTC)
    values = {
        "today": now.date().isoformat(),
        "yesterday": (now - timedelta(days=1)).date().isoformat(),
        "tomorrow": (now + timedelta(days=1)).date().isoformat(),
        "a_minute_ago_rfc2822": format_datetime(now - timedelta(minutes=1)),
        "a_minute_ago_iso": (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S.000"),
        "in_a_minute_iso": (now + timedelta(minutes=1)).isoformat(),
    }

    status, body = list_messages(sandbox, {name: value.format(**values)})

    assert status == 200
    assert len(body["messages"]) == found


def test_an_unreadable_date_sent_is_a_twilio_error(sandbox: SandboxHandle) -> None:
    status, body = list_messages(sandbox, {"DateSent>": "last tuesday"})

    assert (status, body["code"]) == (400, 20001)


def test_pages_are_chained_by_page_token_and_keep_the_filters(sandbox: SandboxHandle, sms: Client) -> None:
    sids = [sms.messages.create(to=RECIPIENT, from_=SENDER, body=f"m{i}").sid for i in range(5)]
    sms.messages.create(to="+14155550999", from_=SENDER, body="not listed")
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    status, first = list_messages(sandbox, {"To": RECIPIENT, "DateSent>": since, "PageSize": "2"})
    next_uri = first["next_page_uri"]

    assert status == 200
    assert "PageToken=PA" in next_uri and "DateSent%3E=" in next_uri and "To=%2B" in next_uri
    seen = [m["sid"] for m in first["messages"]]
    while next_uri:
        _, page = list_messages(sandbox, path=next_uri)
        seen += [m["sid"] for m in page["messages"]]
        next_uri = page["next_page_uri"]
    assert seen == list(reversed(sids))
    # The official client follows the same chain.
    assert [m.sid for m in sms.messages.list(to=RECIPIENT, page_size=2)] == list(reversed(sids))


def test_an_unknown_page_token_is_a_twilio_error(sandbox: SandboxHandle) -> None:
    status, body = list_messages(sandbox, {"PageToken": "PAnothing"})

    assert (status, body["code"]) == (400, 20001)


def test_a_new_message_does_not_shift_the_next_page(sandbox: SandboxHandle, sms: Client) -> None:
    sids = [sms.messages.create(to=RECIPIENT, from_=SENDER, body=f"m{i}").sid for i in range(3)]
    _, first = list_messages(sandbox, {"To": RECIPIENT, "PageSize": "2"})
    time.sleep(0.01)
    sms.messages.create(to=RECIPIENT, from_=SENDER, body="arrived between pages")

    _, second = list_messages(sandbox, path=first["next_page_uri"])

    assert [m["sid"] for m in second["messages"]] == [sids[0]]


def list_messages(
    sandbox: SandboxHandle, query: dict[str, str] | None = None, *, path: str | None = None
) -> tuple[int, dict]:
    import base64
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from sandbox.tests.helpers import ACCOUNT_SID
    from sandbox.twilio_api import DEFAULT_AUTH_TOKEN

    if path is None:
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?{urllib.parse.urlencode(query or {})}"
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode()).decode()
    request = urllib.request.Request(sandbox.url("sms-primary") + path, headers={"Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


