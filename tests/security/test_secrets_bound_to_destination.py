"""2. A write-only vendor secret cannot be read back by repointing the vendor.

The attack: edit `sms-primary`, point its `base_url` at a listener, leave the (write-only)
auth token blank, press "send a test message": the listener received `Authorization: Basic`
with the stored token. Now a change of destination without the secrets typed again is refused,
for every adapter, in the admin and in the service alike.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from notifications.configuration import vendor_upsert
from notifications.models import Vendor
from notifications.sending import notification_send
from notifications.vendor_secrets import secrets_stored
from sandbox.testing import SandboxHandle
from tests.security.listeners import Listener

ACCOUNT = "AC" + "1" * 32
OTHER_ACCOUNT = "AC" + "2" * 32

# adapter -> (channel, settings, secrets, a destination change, an ordinary change)
ADAPTERS: dict[str, tuple[str, dict[str, Any], dict[str, str], dict[str, Any], dict[str, Any]]] = {
    "smtp": (
        "email",
        {"host": "127.0.0.1", "port": 2525, "from_email": "shop@beacon.example"},
        {"username": "beacon", "password": "smtp-password-1"},
        {"host": "127.0.0.2"},
        {"from_email": "orders@beacon.example"},
    ),
    "twilio": (
        "sms",
        {"base_url": "http://127.0.0.1:8101", "account_sid": ACCOUNT, "from_number": "+15005550006"},
        {"auth_token": "twilio-token-1"},
        {"base_url": "http://127.0.0.1:9999"},
        {"from_number": "+15005550007"},
    ),
    "webhook_email": (
        "email",
        {"url": "http://127.0.0.1:8200/hook"},
        {"signing_secret": "hook-secret-1"},
        {"url": "http://127.0.0.1:8200/elsewhere"},
        {},
    ),
    "webhook_sms": (
        "sms",
        {"url": "http://127.0.0.1:8200/hook"},
        {"signing_secret": "hook-secret-1"},
        {"url": "http://127.0.0.1:9999/hook"},
        {},
    ),
    "console_email": ("email", {}, {}, {}, {}),
    "console_sms": ("sms", {}, {}, {}, {}),
}
# Other ways to move a destination: the port, TLS turned off, another Twilio account.
MORE_DESTINATION_CHANGES = [
    ("smtp", {"port": 2526}),
    ("smtp", {"use_tls": True}),
    ("twilio", {"account_sid": OTHER_ACCOUNT}),
    ("twilio", {"base_url": "http://127.0.0.1:8101/evil"}),
]


def install(adapter: str) -> Vendor:
    channel, settings, secrets, _, _ = ADAPTERS[adapter]
    return vendor_upsert(
        name=f"v-{adapter}", channel=channel, adapter=adapter, priority=1, enabled=True, settings=settings, secrets=secrets
    )


def form_data(vendor: Vendor, settings: dict[str, Any], **secrets: str) -> dict[str, Any]:
    fields = (
        "name", "channel", "adapter", "priority", "timeout_seconds", "breaker_window_size", "breaker_minimum_calls",
        "breaker_failure_rate", "breaker_slow_call_seconds", "breaker_slow_call_rate", "breaker_open_seconds",
        "breaker_half_open_trials", "rate_limit_per_second", "rate_limit_burst",
    )
    data: dict[str, Any] = {name: getattr(vendor, name) for name in fields}
    data.update(enabled="on", settings=json.dumps(settings))
    data.update({f"secret__{name}": value for name, value in secrets.items()})
    return data


@pytest.mark.django_db
@pytest.mark.parametrize("adapter", [key for key, spec in ADAPTERS.items() if spec[2]])
def test_repointing_a_vendor_without_its_secrets_is_refused_in_the_admin(admin_client: Client, adapter: str) -> None:
    vendor = install(adapter)
    _, settings, secrets, moved, _ = ADAPTERS[adapter]
    url = reverse("admin:notifications_vendor_change", args=[vendor.pk])

    response = admin_client.post(url, form_data(vendor, {**settings, **moved}))

    assert response.status_code == 200  # the form again, with the reason
    text = response.content.decode()
    assert "changed: re-enter" in text and "only ever sent to the destination it was entered for" in text
    vendor.refresh_from_db()
    assert vendor.settings == settings
    assert secrets_stored(vendor.secrets_encrypted) == secrets


@pytest.mark.django_db
@pytest.mark.parametrize("adapter", [key for key, spec in ADAPTERS.items() if spec[2]])
def test_repointing_with_the_secrets_typed_again_is_saved(admin_client: Client, adapter: str) -> None:
    vendor = install(adapter)
    _, settings, secrets, moved, _ = ADAPTERS[adapter]
    retyped = {name: f"{value}-new" for name, value in secrets.items()}

    response = admin_client.post(
        reverse("admin:notifications_vendor_change", args=[vendor.pk]), form_data(vendor, {**settings, **moved}, **retyped)
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    vendor.refresh_from_db()
    assert vendor.settings == {**settings, **moved}
    assert secrets_stored(vendor.secrets_encrypted) == retyped


@pytest.mark.django_db
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_a_change_that_keeps_the_destination_keeps_the_secrets(admin_client: Client, adapter: str) -> None:
    """Console adapters have no secret and no destination: any change is an ordinary one."""
    vendor = install(adapter)
    _, settings, secrets, moved, ordinary = ADAPTERS[adapter]
    new_settings = {**settings, **ordinary, **(moved if not secrets else {})}

    response = admin_client.post(reverse("admin:notifications_vendor_change", args=[vendor.pk]), form_data(vendor, new_settings))

    assert response.status_code == 302, response.content.decode()[:2000]
    vendor.refresh_from_db()
    assert vendor.settings == new_settings
    assert secrets_stored(vendor.secrets_encrypted) == secrets


@pytest.mark.django_db
@pytest.mark.parametrize(("adapter", "moved"), MORE_DESTINATION_CHANGES + [(k, s[3]) for k, s in ADAPTERS.items() if s[2]])
def test_the_service_refuses_a_new_destination_for_old_secrets(adapter: str, moved: dict[str, Any]) -> None:
    vendor = install(adapter)
    _, settings, secrets, _, _ = ADAPTERS[adapter]

    with pytest.raises(ValidationError) as refused:
        vendor_upsert(name=vendor.name, settings={**settings, **moved})

    assert set(refused.value.message_dict) == set(secrets)
    vendor.refresh_from_db()
    assert vendor.settings == settings and secrets_stored(vendor.secrets_encrypted) == secrets


@pytest.mark.django_db
def test_a_repointed_sms_vendor_sends_no_stored_token_to_a_listener(
    admin_client: Client, vendors: dict[str, Vendor], templates: None, sandbox: SandboxHandle, listener: Listener
) -> None:
    """The attack as reported, end to end: repoint, leave the token blank, send a test message."""
    vendor = vendors["sms-primary"]
    change = reverse("admin:notifications_vendor_change", args=[vendor.pk])
    admin_client.post(change, form_data(vendor, {**vendor.settings, "base_url": listener.url}))
    admin_client.post(
        reverse("admin:notifications_vendor_changelist"),
        {"action": "send_test_message", "_selected_action": [vendor.pk], "apply": "1", "channel": "sms", "to": "+447911123456"},
    )
    from notifications.models import Notification

    for notification in Notification.objects.filter(event_type="vendor_test"):
        notification_send(notification_id=notification.pk)

    assert listener.seen == []
    assert Vendor.objects.get(pk=vendor.pk).settings["base_url"] != listener.url
    assert sandbox.control.messages("sms-primary") or sandbox.control.messages("sms-fallback")
