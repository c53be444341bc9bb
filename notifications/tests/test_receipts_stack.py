"""Receipts with real processes: gunicorn (the web Twilio and the ESP call back), a Celery worker
on the real broker, and the sandbox's Twilio and Postmark servers posting receipts to the web."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from checkout.tests.factories import VALID_CHECKOUT as VALID
from harness.database import current_database_url
from harness.processes import (
    ManagedProcess,
    broker_purge,
    celery_worker,
    free_port,
    gunicorn,
    port_free,
    stack_env,
    wait_until,
)
from notifications.demo import demo_esp_vendors_install
from notifications.models import DeliveryAttempt, Notification, Vendor
from notifications.tests.helpers import vendor_webhook_secret
from sandbox.testing import SandboxHandle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(settings, vendors: dict, templates: None, sandbox: SandboxHandle, tmp_path: Path,
          api_client_with_key) -> Iterator[dict]:
    """gunicorn and a worker whose PUBLIC_BASE_URL is that gunicorn, ESP vendors first for email."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = stack_env(database_url=current_database_url(), redis_url=settings.REDIS_URL,
                    broker_url=settings.CELERY_BROKER_URL, SECRET_KEY=settings.SECRET_KEY,
                    CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"], PUBLIC_BASE_URL=base_url,
                    NOTIFICATION_LEASE_MARGIN="1")
    esp = demo_esp_vendors_install(host="127.0.0.1", timeout=2,
                                   ports={n: sandbox.port(n) for n in ("esp-primary", "esp-fallback")})
    for vendor in esp:
        sandbox.control.set_webhook(vendor.name, url=f"{base_url}/webhooks/esp/{vendor.pk}/tracking/",
                                    basic_auth=vendor_webhook_secret(vendor))
    broker_purge(settings.CELERY_BROKER_URL)
    processes: list[ManagedProcess] = []
    try:
        processes.append(gunicorn(env, port=port, workers=1, threads=4, log_dir=tmp_path).start())
        wait_until(lambda: not port_free(port), timeout=60, what="gunicorn listening")
        worker = celery_worker(env, log_dir=tmp_path).start()
        processes.append(worker)
        wait_until(lambda: "ready." in worker.log_path.read_text(), timeout=30, what="worker")
        yield {"base_url": base_url, "key": api_client_with_key[1]}
    finally:
        for process in processes:
            process.stop()


def checkout(stack: dict) -> Callable[[], list[dict]]:
    headers = {"Authorization": f"Bearer {stack['key']}", "Idempotency-Key": uuid.uuid4().hex}
    response = requests.post(f"{stack['base_url']}/api/v1/checkouts/", json=VALID, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    order_url = f"{stack['base_url']}/api/v1/checkouts/{response.json()['id']}/"
    return lambda: requests.get(order_url, headers=headers, timeout=30).json()["notifications"]


def test_a_checkout_ends_with_both_notifications_delivered_through_receipts(stack: dict, sandbox) -> None:
    notifications = checkout(stack)

    wait_until(lambda: [n["delivery_state"] for n in notifications()] == ["delivered", "delivered"],
               timeout=60, what="both notifications delivered")
    shown = sorted((n["channel"], n["status"], n["vendor"], n["delivery_state"]) for n in notifications())
    assert shown == [("email", "sent", "esp-primary", "delivered"), ("sms", "sent", "sms-primary", "delivered")]
    posted = sandbox.control.receipts_posted("sms-primary")
    assert sorted(p["status"] for p in posted) == ["delivered", "sent"]
    assert {p["http_status"] for p in posted + sandbox.control.receipts_posted("esp-primary")} == {200}
    # The web that received them counts them: the delivered rate's numerator, per vendor and channel.
    scrape = requests.get(f"{stack['base_url']}/metrics", timeout=30).text
    delivered = {(s.labels["vendor"], s.labels["channel"]): s.value
                 for family in text_string_to_metric_families(scrape) if family.name == "beacon_delivery_receipts"
                 for s in family.samples if s.name.endswith("_total") and s.labels["state"] == "delivered"}
    assert delivered == {("sms-primary", "sms"): 1.0, ("esp-primary", "email"): 1.0}


def test_a_carrier_undelivered_sms_is_delivered_by_the_fallback_vendor(stack: dict, sandbox) -> None:
    # 30008: "unknown error" from the carrier route, not the recipient's fault; twice, out of order.
    sandbox.control.set_faults("sms-primary", receipt_status="undelivered", receipt_error_code=30008,
                               receipt_duplicates=True, receipt_out_of_order=True)
    notifications = checkout(stack)

    wait_until(lambda: {n["channel"]: (n["vendor"], n["delivery_state"]) for n in notifications()}.get("sms")
               == ("sms-fallback", "delivered"), timeout=60, what="the SMS delivered by sms-fallback")
    sms = Notification.objects.get(channel="sms")
    attempts = list(DeliveryAttempt.objects.filter(notification=sms).order_by("id")
                    .values_list("vendor__name", "outcome", "delivery_state", "delivery_code"))
    assert attempts == [("sms-primary", "sent", "undelivered", "30008"), ("sms-fallback", "sent", "delivered", "")]
    assert len(sandbox.control.messages("sms-fallback")) == 1  # duplicate receipts started one fallback


def test_a_recipient_fault_is_not_sent_again_elsewhere(stack: dict, sandbox) -> None:
    sandbox.control.set_faults("sms-primary", receipt_status="undelivered", receipt_error_code=30006)  # landline
    notifications = checkout(stack)

    wait_until(lambda: {n["channel"]: n["delivery_state"] for n in notifications()}.get("sms") == "undelivered",
               timeout=60, what="the SMS undelivered")
    wait_until(lambda: len(sandbox.control.receipts_posted("sms-primary")) == 2, timeout=30, what="both callbacks")
    assert sandbox.control.messages("sms-fallback") == []
    assert Vendor.objects.get(name="sms-primary").attempts.count() == 1
