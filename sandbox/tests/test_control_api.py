from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from sandbox.client import SandboxControl, SandboxControlError
from sandbox.testing import SandboxHandle
from sandbox.tests.helpers import RECIPIENT, SENDER, post_message


def raw_call(url: str, method: str, body: bytes | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_and_instances_describe_the_default_layout(sandbox: SandboxHandle) -> None:
    assert sandbox.control.healthy()
    instances = {i["name"]: i for i in sandbox.control.instances()}

    assert {name: i["kind"] for name, i in instances.items()} == {
        "sms-primary": "twilio",
        "sms-fallback": "twilio",
        "smtp-primary": "smtp",
        "smtp-fallback": "smtp",
        "esp-primary": "postmark",
        "esp-fallback": "postmark",
    }
    for name, instance in instances.items():
        assert instance["port"] == sandbox.port(name)
        assert set(instance["counters"]) == {
            "requests", "connections", "accepted", "duplicates_received", "duplicates_suppressed", "failures_injected"
        }


def test_unknown_instance_is_a_json_404(sandbox: SandboxHandle) -> None:
    with pytest.raises(SandboxControlError) as caught:
        sandbox.control.set_faults("sms-nowhere", latency_ms=1)

    assert caught.value.status == 404
    assert "sms-nowhere" in caught.value.body["error"]
    assert raw_call(sandbox.control_url + "/no/such/route", "GET")[0] == 404


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"latency": 5}', "unknown fault"),
        (b'{"failure_rate": 1.5}', "failure_rate"),
        (b'{"outage": "yes"}', "outage"),
        (b'{"error_status": 200}', "error_status"),
    ],
)
def test_bad_fault_updates_are_json_400s_and_change_nothing(sandbox: SandboxHandle, body: bytes, error: str) -> None:
    status, answer = raw_call(sandbox.control_url + "/instances/sms-primary/faults", "PUT", body)

    assert status == 400
    assert isinstance(answer, dict) and error in answer["error"]
    assert sandbox.control.instance("sms-primary")["faults"]["failure_rate"] == 0


def test_clear_empties_one_inbox_only(sandbox: SandboxHandle) -> None:
    for name in ("sms-primary", "sms-fallback"):
        post_message(sandbox.url(name), {"To": RECIPIENT, "From": SENDER, "Body": "x"})

    sandbox.control.clear("sms-primary")

    assert sandbox.control.messages("sms-primary") == []
    assert len(sandbox.control.messages("sms-fallback")) == 1


def test_messages_filter_by_recipient_and_carry_receipt_time(sandbox: SandboxHandle) -> None:
    url = sandbox.url("sms-primary")
    post_message(url, {"To": RECIPIENT, "From": SENDER, "Body": "for ada"})
    post_message(url, {"To": "+14155550999", "From": SENDER, "Body": "for bob"})

    [message] = sandbox.control.messages("sms-primary", to=RECIPIENT)

    assert message["body"] == "for ada"
    assert message["instance"] == "sms-primary"
    assert isinstance(message["received_at"], float)


def test_wait_for_messages_returns_once_they_arrive_or_times_out(sandbox: SandboxHandle) -> None:
    post_message(sandbox.url("sms-primary"), {"To": RECIPIENT, "From": SENDER, "Body": "x"})

    assert len(sandbox.control.wait_for_messages("sms-primary", 1, timeout=1)) == 1
    with pytest.raises(TimeoutError, match="expected 2 message"):
        sandbox.control.wait_for_messages("sms-primary", 2, timeout=0.2)


def test_client_reports_an_unreachable_sandbox_as_unhealthy() -> None:
    assert not SandboxControl("http://127.0.0.1:9", timeout=0.5).healthy()
