"""One masking rule for every place an address must not appear whole: the admin, vendor error
texts, log lines and error reports."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import masking
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


def _mask_every_pattern(text: str) -> str:
    """text_mask as it was before it skipped patterns that cannot match: every pattern, always."""
    text = masking._EMAIL_IN_TEXT.sub(lambda m: address_mask(m.group(0)), text)
    text = masking._PHONE_IN_TEXT.sub(
        lambda m: address_mask(m.group(0), phone_head_digits=masking.TEXT_PHONE_HEAD_DIGITS), text
    )
    return masking._SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + "[redacted]", text)


_PIECES = st.sampled_from([
    "token", "TOKEN", "Auth_Token", "password", "PassWord", "secret", "api_key", "API_KEY", "authorization",
    "Authorization: Bearer ", "bearer ", "=", ":", " ", '"', "'", ",", "}", "+447911123321", "+12", "@",
    "ana@example.com", "x.y@mail.example.org", "\u017fecret", "to\u212aen", "authori\u0131ation", "pa\u017f\u017fword",
    "é", "•", "\n", "0", "abc", "{\"message\": \"", "order 123",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=14).map("".join))
def test_skipping_patterns_that_cannot_match_masks_exactly_as_running_them_all(text: str) -> None:
    assert text_mask(text) == _mask_every_pattern(text)


def test_a_secret_spelled_with_unicode_case_folding_is_still_redacted() -> None:
    # The pattern is case-insensitive with Unicode folding: "ſ" (long s) matches "s", "K" (Kelvin) "k".
    assert text_mask("pa\u017fsword=hunter2") == "pa\u017fsword=[redacted]"
    assert text_mask("to\u212aen: abc123") == "to\u212aen: [redacted]"
