"""One masking rule for every place an address must not appear whole: the admin, vendor error
texts, log lines and error reports."""

from __future__ import annotations

from foundation.masking import address_mask, text_mask
from notifications.vendors.base import scrub


def test_a_vendor_reply_that_echoes_the_recipient_keeps_it_masked_as_the_admin_shows_it() -> None:
    reply = "550 5.1.1 <ana.souza@example.com>: mailbox unavailable; +447911123321 unknown"

    scrubbed = scrub(reply, "ana.souza@example.com", "+447911123321")

    assert scrubbed == "550 5.1.1 <a•••@example.com>: mailbox unavailable; +4479•••••321 unknown"
    assert address_mask("ana.souza@example.com") in scrubbed and address_mask("+447911123321") in scrubbed


def test_a_log_text_has_every_address_and_secret_masked() -> None:
    text = "to ana@example.com and bob@shop.example via +447911123456 auth_token=abc123 password: hunter2"

    assert text_mask(text) == (
        "to a•••@example.com and b•••@shop.example via +447••••••456 auth_token=[redacted] password: [redacted]"
    )


def test_masking_a_masked_text_again_changes_nothing() -> None:
    masked = text_mask("ana@example.com called +5511987654321")

    assert text_mask(masked) == masked
    assert address_mask(address_mask("+5511987654321")) == address_mask("+5511987654321")


def test_something_that_is_no_address_keeps_only_its_first_character() -> None:
    assert address_mask("device-token-123") == "d•••"
    assert address_mask("") == ""
