"""E.164 numbers are checked by one rule, for the checkout's customer and an event's SMS recipient."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from foundation.phone_numbers import E164_MESSAGE, e164_validate


@pytest.mark.parametrize("number", ["+447911123456", "+5511987654321", "+15005550006"])
def test_a_possible_e164_number_is_accepted_as_written(number: str) -> None:
    assert e164_validate(number) == number


@pytest.mark.parametrize(
    "number",
    [
        "447911123456",  # no "+"
        "+44 7911 123456",  # spaces
        "+0447911123456",  # no country code starts with 0
        "+4479",  # too short
        "+4479111234567890",  # longer than 15 digits
        "+٤٤٧٩١١١٢٣٤٥٦",  # digits other than ASCII 0-9
        "+4479111234567",  # E.164 in shape, but no UK number is that long
        "+999123456789",  # no such country code
    ],
)
def test_anything_else_is_refused_with_one_message(number: str) -> None:
    with pytest.raises(serializers.ValidationError) as refused:
        e164_validate(number)
    assert refused.value.detail == [E164_MESSAGE]
