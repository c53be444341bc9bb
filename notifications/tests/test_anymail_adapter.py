"""The anymail adapter against the sandbox's Postmark-compatible API: django-anymail's real
Postmark backend over real HTTP, each vendor with its own server token, errors classified."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from notifications.configuration import vendor_upsert
from notifications.demo import demo_esp_vendors_install
from notifications.models import Vendor
from notifications.routing import route_for
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendors.anymail_esp import AnymailEspAdapter
from notifications.vendors.base import OutboundMessage, VendorError
from sandbox.testing import SandboxHandle


@pytest.fixture
def esp(db, vendors: dict, sandbox: SandboxHandle) -> dict[str, Vendor]:
    installed = demo_esp_vendors_install(host="127.0.0.1", timeout=2,
                                         ports={n: sandbox.port(n) for n in ("esp-primary", "esp-fallback")})
    return {vendor.name: vendor for vendor in installed}


def message(to: str = "ana@example.com") -> OutboundMessage:
    return OutboundMessage(channel="email", to=to, subject="Your order", text="Thanks!", html="<p>Thanks!</p>",
                           idempotency_key="beacon-test", request_id="req-23")


def adapter(vendor: Vendor, **secrets: str) -> AnymailEspAdapter:
    from notifications.vendor_secrets import secrets_resolve

    return AnymailEspAdapter(settings=vendor.settings, secrets={**secrets_resolve(vendor.secrets_encrypted), **secrets},
                             timeout=2)


def test_it_sends_through_postmarks_api_and_returns_its_message_id(esp: dict, sandbox: SandboxHandle) -> None:
    result = adapter(esp["esp-primary"]).send(message())

    [stored] = sandbox.control.messages("esp-primary")
    assert result.message_id == stored["id"]
    assert (stored["to"], stored["subject"], stored["text"], stored["html"]) == (
        "ana@example.com", "Your order", "Thanks!", "<p>Thanks!</p>")
    assert stored["request_id"] == "req-23"


@pytest.mark.parametrize(("to", "secrets", "fault", "kind", "code"), [
    ("not-an-address", {}, {}, "permanent", None),          # ErrorCode 300, refused recipient
    ("inactive@example.com", {}, {}, "permanent", None),    # ErrorCode 406, inactive recipient
    ("ana@example.com", {"api_key": "wrong"}, {}, "misconfigured", "10"),  # 401, bad server token
    ("ana@example.com", {}, {"failure_rate": 1, "error_status": 500}, "transient", "500"),
    ("ana@example.com", {}, {"failure_rate": 1, "error_status": 429}, "transient", None),
])
def test_its_errors_are_classified_by_postmarks_code_and_http_status(
    esp: dict, sandbox: SandboxHandle, to: str, secrets: dict, fault: dict, kind: str, code: str | None
) -> None:
    if fault:
        sandbox.control.set_faults("esp-primary", **fault)

    with pytest.raises(VendorError) as raised:
        adapter(esp["esp-primary"], **secrets).send(message(to))

    assert raised.value.kind == kind
    assert raised.value.vendor_code == code
    assert "wrong" not in str(raised.value)  # never the token
    assert sandbox.control.messages("esp-primary") == []


def test_a_vendor_that_is_down_is_a_transient_failure(esp: dict, sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("esp-primary", outage=True)

    with pytest.raises(VendorError) as raised:
        adapter(esp["esp-primary"]).send(message())

    assert raised.value.kind in ("transient", "unknown")
    assert not raised.value.permanent


@pytest.mark.django_db
def test_an_email_falls_back_to_the_second_esp_with_its_own_key(esp: dict, templates: None, sandbox) -> None:
    sandbox.control.set_faults("esp-primary", failure_rate=1, error_status=503)

    email = run_until_settled(dispatch(make_trigger())["email"].pk)

    assert (email.status, email.vendor.name) == ("sent", "esp-fallback")
    assert len(sandbox.control.messages("esp-fallback")) == 1
    assert list(email.attempts.values_list("vendor__name", "outcome")) == [
        ("esp-primary", "transient_error"), ("esp-fallback", "sent")]


@pytest.mark.django_db
def test_a_wrong_token_on_one_esp_vendor_fails_over_and_counts_against_it(esp: dict, templates: None, sandbox) -> None:
    vendor_upsert(name="esp-primary", secrets={"api_key": "revoked-token"})
    route_for(Vendor.objects.get(name="esp-primary"))

    email = run_until_settled(dispatch(make_trigger())["email"].pk)

    assert email.vendor.name == "esp-fallback"
    assert email.attempts.first().vendor_code == "10"


@pytest.mark.django_db
def test_its_configuration_is_checked_on_save_and_by_the_egress_policy(esp: dict, settings) -> None:
    with pytest.raises(ValidationError) as unknown_esp:
        vendor_upsert(name="esp-x", channel="email", adapter="anymail", settings={"esp": "pigeon", "from_email": "a@b.c"},
                      secrets={"api_key": "k"})
    settings.VENDOR_EGRESS_ALLOWED_NETWORKS = ()
    with pytest.raises(ValidationError) as private_url:
        vendor_upsert(name="esp-y", channel="email", adapter="anymail", secrets={"api_key": "k"},
                      settings={"esp": "postmark", "api_url": "http://10.0.0.5/", "from_email": "a@b.c"})

    assert "esp" in unknown_esp.value.message_dict
    assert "api_url" in private_url.value.message_dict
