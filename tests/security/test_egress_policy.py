"""4. Vendors may not point anywhere: the destinations the attack saved (Redis on loopback, the
metadata service, a private SMTP host) are refused on save and again as the adapter connects,
after DNS resolution, and the connection goes to the address that was checked."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from notifications.configuration import vendor_upsert
from notifications.vendors.base import OutboundMessage, VendorError
from notifications.vendors.registry import build_adapter
from tests.security.listeners import Listener

ACCOUNT = "AC" + "1" * 32
SMS = OutboundMessage(channel="sms", to="+447911123456", subject="", text="Hi Ana", html="", idempotency_key="k-1")
EMAIL = OutboundMessage(channel="email", to="ana@example.com", subject="Hi", text="Hi Ana", html="", idempotency_key="k-2")

# The attack's destinations, each as the vendor it was saved on.
HOSTILE = {
    "webhook to Redis on loopback": ("webhook_sms", "sms", {"url": "http://127.0.0.1:6379/"}),
    "webhook to the metadata service": ("webhook_sms", "sms", {"url": "http://169.254.169.254/latest/meta-data/"}),
    "webhook over https to metadata": ("webhook_email", "email", {"url": "https://169.254.169.254/latest/"}),
    "twilio base url at metadata": (
        "twilio", "sms", {"base_url": "http://169.254.169.254", "account_sid": ACCOUNT, "from_number": "+15005550006"}),
    "smtp to a private redis": ("smtp", "email", {"host": "10.0.0.5", "port": 6379, "from_email": "s@beacon.example"}),
    "webhook to a name for loopback": ("webhook_sms", "sms", {"url": "https://localhost/hook"}),
    "webhook to IPv4-mapped loopback": ("webhook_sms", "sms", {"url": "https://[::ffff:127.0.0.1]/hook"}),
    "webhook to a shared-space address": ("webhook_sms", "sms", {"url": "https://100.64.0.1/hook"}),
    "webhook to a name that does not resolve": ("webhook_sms", "sms", {"url": "https://no-such-host.invalid/hook"}),
    "webhook over plain http to a public address": ("webhook_sms", "sms", {"url": "http://93.184.216.34/hook"}),
}
SECRETS = {"webhook_sms": {"signing_secret": "s"}, "webhook_email": {"signing_secret": "s"},
           "twilio": {"auth_token": "t"}, "smtp": {}}


@pytest.fixture
def production_policy(settings) -> None:
    """The default of a deployed Beacon: public addresses only, https only."""
    settings.VENDOR_EGRESS_ALLOWED_NETWORKS = []
    settings.VENDOR_EGRESS_ALLOW_HTTP = False


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_attacks_destinations_are_refused_on_save(production_policy: None, case: str) -> None:
    adapter, channel, settings = HOSTILE[case]

    with pytest.raises(ValidationError) as refused:
        vendor_upsert(name="hostile", adapter=adapter, channel=channel, priority=1, settings=settings, secrets=SECRETS[adapter])

    assert "egress policy" in str(refused.value) or "http://" in str(refused.value)


@pytest.mark.django_db
def test_the_admin_says_why_a_destination_is_refused(production_policy: None, admin_client: Client) -> None:
    data = {
        "name": "hostile", "channel": "sms", "adapter": "webhook_sms", "priority": 1, "enabled": "on",
        "settings": '{"url": "https://169.254.169.254/latest/meta-data/"}', "secret__signing_secret": "s",
        "timeout_seconds": 5, "breaker_window_size": 20, "breaker_minimum_calls": 10, "breaker_failure_rate": 50,
        "breaker_slow_call_seconds": 2, "breaker_slow_call_rate": 80, "breaker_open_seconds": 30,
        "breaker_half_open_trials": 3, "rate_limit_per_second": 0, "rate_limit_burst": 0,
    }

    response = admin_client.post(reverse("admin:notifications_vendor_add"), data)

    assert response.status_code == 200
    assert "169.254.169.254 is link-local, metadata" in response.content.decode()


@pytest.mark.django_db
def test_metadata_stays_refused_even_inside_an_allowed_network(settings) -> None:
    settings.VENDOR_EGRESS_ALLOWED_NETWORKS = ["0.0.0.0/0"]

    with pytest.raises(ValidationError, match="never allowed"):
        vendor_upsert(name="meta", adapter="webhook_sms", channel="sms", priority=1,
                      settings={"url": "http://169.254.169.254/"}, secrets={"signing_secret": "s"})


@pytest.mark.django_db
def test_a_public_https_destination_and_an_allowed_network_are_accepted(production_policy: None, settings) -> None:
    vendor_upsert(name="public", adapter="webhook_sms", channel="sms", priority=1,
                  settings={"url": "https://93.184.216.34/hook"}, secrets={"signing_secret": "s"})
    settings.VENDOR_EGRESS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    vendor_upsert(name="relay", adapter="smtp", channel="email", priority=1,
                  settings={"host": "10.0.0.5", "port": 587, "from_email": "s@beacon.example"}, secrets={})


def webhook(url: str) -> Any:
    return build_adapter("webhook_sms", settings={"url": url}, secrets={"signing_secret": "s"}, timeout=2)


def test_a_destination_saved_earlier_is_refused_at_send_time(production_policy: None, listener: Listener) -> None:
    """Saved while loopback was allowed (or written straight into the database): the adapter
    checks again as it connects, and nothing reaches the listener."""
    with pytest.raises(VendorError, match="egress policy refused") as refused:
        webhook(listener.url + "/hook").send(SMS)

    assert not refused.value.permanent  # another vendor may still deliver it
    assert listener.seen == []


def test_an_smtp_vendor_is_checked_as_it_connects(production_policy: None) -> None:
    smtp = build_adapter("smtp", settings={"host": "127.0.0.1", "port": 2525, "from_email": "s@beacon.example"},
                         secrets={}, timeout=2)

    with pytest.raises(VendorError, match="egress policy refused"):
        smtp.send(EMAIL)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, list[list[str]]], list[str]]]:
    """Answers for names under .test, one list of addresses per lookup in turn (the last one
    repeats): a DNS server that changes its answer between lookups (DNS rebinding)."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in answers:
            asked.append(host)
            queue = answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))) for address in addresses]
        return real(host, port, *args, **kwargs)

    def answer(host: str, lookups: list[list[str]]) -> list[str]:
        answers[host] = lookups
        return asked

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield answer


def test_the_connection_goes_to_the_address_that_was_checked(fake_dns, listener: Listener) -> None:
    """The first answer is allowed (loopback, as in the tests' policy); any later lookup would
    say a private address. One lookup, checked, then connected to."""
    asked = fake_dns("rebind.test", [["127.0.0.1"], ["10.0.0.5"]])
    port = listener.server_address[1]

    webhook(f"http://rebind.test:{port}/hook").send(SMS)

    assert len(listener.seen) == 1 and listener.seen[0]["Host"] == f"rebind.test:{port}"
    assert asked == ["rebind.test"]


def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(fake_dns, listener: Listener) -> None:
    fake_dns("private.test", [["10.0.0.5"]])
    fake_dns("mixed.test", [["127.0.0.1", "169.254.169.254"]])
    port = listener.server_address[1]

    for host in ("private.test", "mixed.test"):
        with pytest.raises(VendorError, match="egress policy refused"):
            webhook(f"http://{host}:{port}/hook").send(SMS)
    assert listener.seen == []
