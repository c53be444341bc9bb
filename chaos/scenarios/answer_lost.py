"""7, 8. A primary vendor accepts each message and its answer is lost: the vendor stores it, then
answers only after the client's read timeout fired (sandbox fault `answer_delay_ms`).

SMS (Twilio can be asked): the lookup after the timeout finds the message, so each SMS is
delivered exactly once, through the primary. Email (an SMTP relay cannot be asked): the fallback
delivers it and the flag says the primary may have too; each copy is counted at the sandbox.
"""

from __future__ import annotations

import time

from chaos.scenarios.common import CHANNEL_INSTANCES, Chaos, ScenarioResult, all_recipients, committed, record_inbox
from chaos.stack import VENDOR_TIMEOUT_SECONDS

RATE, SECONDS = 4.0, 15.0
# Stored at once, answered 1.5 timeouts later: the client always gives up first.
ANSWER_DELAY_MS = int(VENDOR_TIMEOUT_SECONDS * 1000 * 1.5)


def run_channel(chaos: Chaos, result: ScenarioResult, channel: str) -> list:
    """Load with the channel's primary losing its answers; return the committed recipients."""
    primary = CHANNEL_INSTANCES[channel][0]
    sandbox = chaos.stack.sandbox
    sandbox.set_faults(primary, answer_delay_ms=ANSWER_DELAY_MS)
    try:
        results = chaos.load(f"lost-{channel}", rate=RATE, seconds=SECONDS).join()
    finally:
        sandbox.clear_faults(primary)
    result.record_load(results)
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")
    recipients = committed(all_recipients(results))
    record_inbox(result, chaos.wait_delivered(recipients, timeout=120))
    return recipients


def lost_answers(recipients: list, channel: str) -> int:
    """Attempts at the primary whose answer was lost (a timeout, or found later by a lookup)."""
    from notifications.models import DeliveryAttempt

    addresses = [r.phone if channel == "sms" else r.email for r in recipients]
    primary = CHANNEL_INSTANCES[channel][0]
    return DeliveryAttempt.objects.filter(
        vendor__name=primary, notification__recipient__in=addresses, duration_ms__gte=VENDOR_TIMEOUT_SECONDS * 900
    ).count()


def run_sms(chaos: Chaos) -> ScenarioResult:
    from notifications.models import DeliveryAttempt

    result = ScenarioResult(7, "SMS primary accepts, answer lost")
    started = time.monotonic()
    recipients = run_channel(chaos, result, "sms")
    phones = [r.phone for r in recipients]
    found = DeliveryAttempt.objects.filter(
        notification__recipient__in=phones, error__startswith="Outcome was unknown; the vendor's message list"
    ).count()
    tally = result.channel("sms")
    result.check("the primary lost answers (its calls timed out after it stored the message)",
                 lost_answers(recipients, "sms") > 0, f"{lost_answers(recipients, 'sms')} lost answers")
    result.check("each lost answer was found at Twilio by a lookup, not sent again", found > 0, f"{found} found")
    result.check("every SMS delivered exactly once", tally.once == tally.expected,
                 f"{tally.once}/{tally.expected} once in {time.monotonic() - started:.0f} s")
    return result


def run_email(chaos: Chaos) -> ScenarioResult:
    result = ScenarioResult(8, "email primary accepts, answer lost")
    recipients = run_channel(chaos, result, "email")
    tally = result.channel("email")
    result.check("the primary lost answers (its calls timed out after it stored the message)",
                 lost_answers(recipients, "email") > 0, f"{lost_answers(recipients, 'email')} lost answers")
    result.check("each email delivered twice is flagged (an SMTP relay cannot be asked)",
                 tally.more_unflagged == 0 and tally.more_flagged > 0,
                 f"{tally.more_flagged} flagged, {tally.more_unflagged} unflagged")
    return result
