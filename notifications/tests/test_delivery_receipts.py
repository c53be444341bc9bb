"""Delivery receipts: the state machine, Twilio's signed status callbacks and the ESP's tracking
webhooks, against the sandbox's real servers posting to a live Beacon."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from harness.processes import wait_until
from notifications.demo import SANDBOX_AUTH_TOKEN, demo_esp_vendors_install
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliveryReceipt,
    Notification,
    NotificationStatus,
    Suppression,
    Vendor,
)
from notifications.receipts import DELIVERY_RANK, Receipt, delivery_state_merge, receipt_record
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled, vendor_webhook_secret
from sandbox.testing import SandboxHandle

STATUS_URL = "/webhooks/twilio/status/"


@pytest.fixture
def receipts_url(live_server, settings) -> str:
    """Beacon's public base URL is the live server: sends name its status callback URL."""
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url + reverse("twilio-status-callback")


def sent_sms_attempt(vendor: Vendor) -> DeliveryAttempt:
    """A notification sent through `vendor`, without a vendor call: rows as the send leaves them."""
    trigger = make_trigger()
    sid = "SM" + uuid.uuid4().hex
    notification = Notification.objects.create(
        trigger=trigger, event_type="order_confirmed", channel="sms", recipient="+447911123456", locale="en",
        status=NotificationStatus.SENT, vendor=vendor, vendor_message_id=sid, sent_at=timezone.now(),
    )
    return DeliveryAttempt.objects.create(notification=notification, vendor=vendor, started_at=timezone.now(),
                                          outcome=AttemptOutcome.SENT, vendor_message_id=sid)


RECEIPT_STATES = st.sampled_from(sorted(DELIVERY_RANK))


@given(st.lists(RECEIPT_STATES, min_size=1, max_size=8), st.randoms())
def test_the_merge_of_states_ignores_order_and_repetition(states: list[str], rnd) -> None:
    shuffled = states + states[: len(states) // 2]
    rnd.shuffle(shuffled)
    final = ""
    for state in shuffled:
        final = delivery_state_merge(final, state)
    assert final == max(states, key=DELIVERY_RANK.__getitem__)
    assert delivery_state_merge(final, "accepted") == final  # a late `sent` never overwrites


@pytest.mark.django_db
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(receipts=st.lists(st.tuples(st.sampled_from(["sent", "delivered", "undelivered", "failed"]),
                                   st.sampled_from(["", "30008"])), min_size=1, max_size=6),
       repeat=st.integers(min_value=1, max_value=3), rnd=st.randoms())
def test_duplicate_and_out_of_order_receipts_leave_the_highest_state_stored_once(
    vendors: dict, settings, receipts: list[tuple[str, str]], repeat: int, rnd
) -> None:
    settings.DELIVERY_FALLBACK_CHANNELS = frozenset()  # the state alone here; fallback has its own tests
    attempt = sent_sms_attempt(vendors["sms-primary"])
    states = {"sent": "accepted", "delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}
    arrivals = receipts * repeat
    rnd.shuffle(arrivals)

    for status, code in arrivals:
        receipt_record(vendor=vendors["sms-primary"], receipt=Receipt(
            vendor_message_id=attempt.vendor_message_id, vendor_status=status, state=states[status], vendor_code=code))

    expected = max((states[s] for s, _ in receipts), key=DELIVERY_RANK.__getitem__)
    attempt.refresh_from_db()
    notification = Notification.objects.get(pk=attempt.notification_id)
    assert (attempt.delivery_state, notification.delivery_state) == (expected, expected)
    assert DeliveryReceipt.objects.filter(attempt=attempt).count() == len(set(receipts))


@pytest.mark.django_db
def test_a_receipt_for_another_vendors_message_is_unknown_and_stores_nothing(vendors: dict) -> None:
    attempt = sent_sms_attempt(vendors["sms-primary"])

    result = receipt_record(vendor=vendors["sms-fallback"], receipt=Receipt(
        vendor_message_id=attempt.vendor_message_id, vendor_status="delivered", state="delivered"))

    assert result.status == "unknown_message"
    assert DeliveryReceipt.objects.count() == 0


def signed_post(client, url: str, params: dict[str, str], token: str = SANDBOX_AUTH_TOKEN, request_token: str = ""):
    signature = RequestValidator(token).compute_signature(url, params)
    headers = {"HTTP_I_TWILIO_IDEMPOTENCY_TOKEN": request_token or uuid.uuid4().hex}
    return client.post(STATUS_URL, params, HTTP_X_TWILIO_SIGNATURE=signature, **headers)


@pytest.mark.django_db
def test_a_forged_or_unsigned_status_callback_is_refused_and_changes_nothing(client, vendors: dict, settings) -> None:
    settings.PUBLIC_BASE_URL = "https://beacon.example"
    attempt = sent_sms_attempt(vendors["sms-primary"])
    params = {"MessageSid": attempt.vendor_message_id, "MessageStatus": "undelivered", "ErrorCode": "30008",
              "AccountSid": vendors["sms-primary"].settings["account_sid"]}
    url = "https://beacon.example" + STATUS_URL

    unsigned = client.post(STATUS_URL, params)
    forged = signed_post(client, url, params, token="not-the-auth-token")
    other_url = signed_post(client, "https://attacker.example" + STATUS_URL, params)

    assert [unsigned.status_code, forged.status_code, other_url.status_code] == [403, 403, 403]
    attempt.refresh_from_db()
    assert attempt.delivery_state == "" and DeliveryReceipt.objects.count() == 0


@pytest.mark.django_db
def test_a_replayed_status_callback_is_refused_a_repeated_status_recorded_once_and_a_late_sent_changes_nothing(
    client, vendors: dict, settings
) -> None:
    settings.PUBLIC_BASE_URL = "https://beacon.example"
    attempt = sent_sms_attempt(vendors["sms-primary"])
    url = "https://beacon.example" + STATUS_URL
    base = {"MessageSid": attempt.vendor_message_id, "AccountSid": vendors["sms-primary"].settings["account_sid"]}

    first = signed_post(client, url, {**base, "MessageStatus": "delivered"}, request_token="tok-1")
    replayed = signed_post(client, url, {**base, "MessageStatus": "delivered"}, request_token="tok-1")
    repeated = signed_post(client, url, {**base, "MessageStatus": "delivered"}, request_token="tok-2")
    late = signed_post(client, url, {**base, "MessageStatus": "sent"})

    assert (first.status_code, first.content) == (200, b"Recorded.")
    assert (replayed.status_code, replayed.content) == (409, b"This request was received before: refused.")
    assert (repeated.status_code, repeated.content) == (200, b"Already recorded.")
    assert late.status_code == 200
    notification = Notification.objects.get(pk=attempt.notification_id)
    assert notification.delivery_state == "delivered"
    assert list(DeliveryReceipt.objects.values_list("vendor_status", flat=True)) == ["delivered", "sent"]


@pytest.mark.django_db
def test_a_callback_with_an_unknown_status_or_message_is_answered_400_or_404(client, vendors: dict, settings) -> None:
    settings.PUBLIC_BASE_URL = "https://beacon.example"
    url = "https://beacon.example" + STATUS_URL
    base = {"AccountSid": vendors["sms-primary"].settings["account_sid"]}

    unknown_status = signed_post(client, url, {**base, "MessageSid": "SM1", "MessageStatus": "exploded"})
    unknown_message = signed_post(client, url, {**base, "MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"})

    assert (unknown_status.status_code, unknown_message.status_code) == (400, 404)


@pytest.mark.django_db(transaction=True)
def test_an_sms_gets_its_delivered_receipt_from_the_sandbox_signed_as_twilio_signs(
    receipts_url: str, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-primary", receipt_out_of_order=True, receipt_duplicates=True)
    sms = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert sandbox.control.messages("sms-primary")[0]["status_callback"] == receipts_url
    wait_until(lambda: len(sandbox.control.receipts_posted("sms-primary")) == 4, timeout=10, what="4 callbacks")
    posted = sandbox.control.receipts_posted("sms-primary")
    assert [(p["status"], p["http_status"]) for p in posted] == [
        ("delivered", 200), ("delivered", 200), ("sent", 200), ("sent", 200)]
    sms.refresh_from_db()
    assert sms.delivery_state == "delivered"
    assert sorted(DeliveryReceipt.objects.values_list("vendor_status", flat=True)) == ["delivered", "sent"]


@pytest.mark.django_db(transaction=True)
def test_an_email_through_the_anymail_adapter_gets_its_delivered_and_bounced_webhooks(
    receipts_url: str, live_server, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    esp = {v.name: v for v in demo_esp_vendors_install(
        host="127.0.0.1", ports={n: sandbox.port(n) for n in ("esp-primary", "esp-fallback")}, timeout=2)}
    for name, vendor in esp.items():
        sandbox.control.set_webhook(name, url=live_server.url + reverse("esp-tracking-webhook", args=[vendor.pk]),
                                    basic_auth=vendor_webhook_secret(vendor))
    sandbox.control.set_faults("esp-primary", receipt_duplicates=True)

    delivered = run_until_settled(dispatch(make_trigger())["email"].pk)
    sandbox.control.set_faults("esp-primary", receipt_status="bounced", receipt_duplicates=False)
    bounced = run_until_settled(dispatch(make_trigger())["email"].pk)

    assert (delivered.vendor.name, bounced.vendor.name) == ("esp-primary", "esp-primary")
    wait_until(lambda: len(sandbox.control.receipts_posted("esp-primary")) == 3, timeout=10, what="3 webhooks")
    assert sorted((p["status"], p["http_status"]) for p in sandbox.control.receipts_posted("esp-primary")) == [
        ("Bounce", 200), ("Delivery", 200), ("Delivery", 200)]
    delivered.refresh_from_db()
    bounced.refresh_from_db()
    assert (delivered.delivery_state, bounced.delivery_state) == ("delivered", "bounced")
    assert DeliveryReceipt.objects.get(attempt__notification=bounced).vendor_code == "HardBounce"
    inbox = sandbox.control.messages("esp-primary")
    assert [m["subject"] for m in inbox] == [delivered.rendered_subject, bounced.rendered_subject]
    # A hard bounce: the address goes on the suppression list, so nothing more is sent to it.
    assert list(Suppression.objects.values_list("channel", "address", "source")) == [
        ("email", bounced.recipient, "hard_bounce")]


@pytest.mark.django_db(transaction=True)
def test_an_esp_webhook_with_wrong_basic_auth_is_refused_and_changes_nothing(
    receipts_url: str, live_server, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    vendor = demo_esp_vendors_install(
        host="127.0.0.1", ports={n: sandbox.port(n) for n in ("esp-primary", "esp-fallback")}, timeout=2)[0]
    sandbox.control.set_webhook("esp-primary", basic_auth="postmark:wrong",
                                url=live_server.url + reverse("esp-tracking-webhook", args=[vendor.pk]))

    email = run_until_settled(dispatch(make_trigger())["email"].pk)

    wait_until(lambda: len(sandbox.control.receipts_posted("esp-primary")) == 1, timeout=10, what="the webhook")
    assert sandbox.control.receipts_posted("esp-primary")[0]["http_status"] == 403
    email.refresh_from_db()
    assert (email.status, email.delivery_state) == ("sent", "")
    assert DeliveryReceipt.objects.count() == 0


def postmark_event(record: str, message_id: str, **extra: object) -> dict:
    return {"RecordType": record, "MessageID": message_id, "Recipient": "ana@example.com",
            "Email": "ana@example.com", "DeliveredAt": "2026-12-07T00:00:00Z", "BouncedAt": "2026-12-07T00:00:00Z",
            "MessageStream": "outbound", "Metadata": {}, **extra}


def basic_auth(secret: str) -> dict[str, str]:
    import base64

    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


@pytest.mark.django_db
def test_an_esp_complaint_after_delivery_is_recorded_and_unauthenticated_or_unknown_webhooks_are_refused(
    client, vendors: dict, sandbox: SandboxHandle
) -> None:
    esp = demo_esp_vendors_install(host="127.0.0.1", timeout=2,
                                   ports={n: sandbox.port(n) for n in ("esp-primary", "esp-fallback")})[0]
    attempt = sent_sms_attempt(vendors["sms-primary"])  # rows only; moved to the ESP below
    Notification.objects.filter(pk=attempt.notification_id).update(channel="email", vendor=esp)
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(vendor=esp)
    url = reverse("esp-tracking-webhook", args=[esp.pk])
    auth = basic_auth(vendor_webhook_secret(esp))

    def post(event: dict, **headers: str):
        return client.post(url, event, content_type="application/json", **headers)

    unauthenticated = post(postmark_event("SpamComplaint", attempt.vendor_message_id, Type="SpamComplaint"))
    wrong = post(postmark_event("Delivery", attempt.vendor_message_id), **basic_auth("postmark:guess"))
    delivered = post(postmark_event("Delivery", attempt.vendor_message_id), **auth)
    complained = post(postmark_event("SpamComplaint", attempt.vendor_message_id, Type="SpamComplaint"), **auth)
    other_vendor = client.post(reverse("esp-tracking-webhook", args=[vendors["smtp-primary"].pk]), {},
                               content_type="application/json", **auth)
    garbage = client.post(url, "not json", content_type="application/json", **auth)

    assert [r.status_code for r in (unauthenticated, wrong, delivered, complained, other_vendor, garbage)] == [
        403, 403, 200, 200, 404, 400]
    attempt.refresh_from_db()
    assert (attempt.delivery_state, attempt.delivery_code) == ("complained", "SpamComplaint")
    assert list(DeliveryReceipt.objects.order_by("id").values_list("vendor_status", "state")) == [
        ("delivered", "delivered"), ("complained", "complained")]
