"""E.164 phone numbers, as every API of Beacon accepts them (a checkout's customer, an event's
SMS recipient): `+`, a country code, at most 15 digits, and a number `phonenumbers` deems possible."""

from __future__ import annotations

import re

import phonenumbers
from rest_framework import serializers

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
E164_MESSAGE = "Enter a phone number in E.164 format, e.g. +447911123456."
# The longest E.164 number with its "+": what an API field may hold.
E164_MAX_LENGTH = 16


def e164_validate(value: str) -> str:
    """`value` if it is an E.164 number that can exist; raises DRF's ValidationError otherwise."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if not E164.match(value) or number is None or not phonenumbers.is_possible_number(number):
        raise serializers.ValidationError(E164_MESSAGE)
    return value
