"""9. The primary SMTP relay presents a certificate Beacon does not trust (STARTTLS on a
self-signed certificate, sandbox `--smtp-tls untrusted`).

The failure is the relay's (or its configuration's), not the email's: each email must fail over
to the fallback at once, be delivered once, and the primary's breaker must count the failures.
"""

from __future__ import annotations

import time

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox
from harness.processes import ManagedProcess, sandbox_base_port, wait_until
from sandbox.client import SandboxControl

RATE, SECONDS = 4.0, 10.0
# Workers read the vendor list at most this long after a change (NOTIFICATION_VENDOR_CACHE_SECONDS + margin).
VENDOR_CHANGE_SECONDS = 3.0


def untrusted_sandbox(chaos: Chaos) -> tuple[ManagedProcess, SandboxControl]:
    from harness.processes import PYTHON

    base = sandbox_base_port()
    command = [PYTHON, "manage.py", "sandbox_vendors", "--base-port", str(base), "--smtp-tls", "untrusted"]
    process = ManagedProcess(f"sandbox-untrusted-{base}", command, env=chaos.stack.env(),
                             log_dir=chaos.stack.log_dir).start()
    control = SandboxControl(f"http://127.0.0.1:{base}")
    wait_until(control.healthy, timeout=30, what="the untrusted relay")
    return process, control


def run(chaos: Chaos) -> ScenarioResult:
    result = ScenarioResult(9, "SMTP primary's certificate not trusted")
    process, relay = untrusted_sandbox(chaos)
    try:
        return _run(chaos, result, relay)
    finally:
        process.stop(timeout=10)


def _run(chaos: Chaos, result: ScenarioResult, relay: SandboxControl) -> ScenarioResult:
    from django.utils import timezone

    from notifications.models import AttemptOutcome, DeliveryAttempt, Vendor

    primary = Vendor.objects.get(name="smtp-primary")
    original = dict(primary.settings)
    relay_port = next(i["port"] for i in relay.instances() if i["name"] == "smtp-primary")
    try:
        Vendor.objects.filter(pk=primary.pk).update(
            settings={**original, "port": relay_port, "use_tls": True}, updated_at=timezone.now()
        )
        time.sleep(VENDOR_CHANGE_SECONDS)
        results = chaos.load("untrusted", rate=RATE, seconds=SECONDS).join()
    finally:
        Vendor.objects.filter(pk=primary.pk).update(settings=original, updated_at=timezone.now())
    result.record_load(results)
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")
    recipients = committed(all_recipients(results))
    record_inbox(result, chaos.wait_delivered(recipients, timeout=90))
    emails = [r.email for r in recipients]
    at_primary = DeliveryAttempt.objects.filter(vendor=primary, notification__recipient__in=emails)
    refused = at_primary.filter(outcome=AttemptOutcome.TRANSIENT_ERROR).count()
    skipped = at_primary.filter(outcome=AttemptOutcome.SKIPPED_CIRCUIT_OPEN).count()
    other = at_primary.exclude(outcome__in=[AttemptOutcome.TRANSIENT_ERROR, AttemptOutcome.SKIPPED_CIRCUIT_OPEN]).count()
    result.check("the untrusted relay got no message (TLS failed before MAIL FROM)",
                 relay.messages("smtp-primary") == [], f"{len(relay.messages('smtp-primary'))} stored")
    result.check("its refusals are transient (failover), none permanent or of unknown outcome",
                 refused > 0 and other == 0, f"{refused} transient, {other} other")
    result.check("the primary's breaker counted them and opened (skips recorded)", skipped > 0, f"{skipped} skips")
    tally = result.channel("email")
    result.check("every email delivered once, by the fallback", tally.once == tally.expected,
                 f"{tally.once}/{tally.expected}")
    example = at_primary.filter(outcome=AttemptOutcome.TRANSIENT_ERROR).values_list("error", flat=True).first()
    if example:
        result.note(f"primary's error: {example[:160]}")
    return result
