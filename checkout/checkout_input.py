"""The checkout's request body, validated once per request by plain functions that give the same
answers as the API's DRF `InputSerializer` (checkout.apis) at a fraction of its cost.

Why not the serializer itself: DRF deep-copies a serializer's declared fields for every
instance (a checkout built four serializers and some twenty fields per request) and walks every
value through several layers of generic field code; that was 17.7% of the web's CPU per
checkout (docs/performance.md). The functions here do the same checks in the same order, once.

The serializer stays: drf-spectacular reads it for the OpenAPI schema, and
checkout/tests/test_checkout_input.py runs both over a corpus of valid and invalid bodies and
requires the same validated data, or the same error document (field paths, messages, their
order and codes). To keep that true by construction where it can be:
- the limits, the locale pattern and the amount's parsing live here and the serializer uses them;
- the messages of the generic checks are DRF's and Django's own (translated as theirs are);
- a failure is DRF's `ValidationError` with DRF's shape: `{field: [messages]}`, nested objects
  as dicts, a line's errors under its index (`{"lines": {"1": {...}}}`), a body or object of
  the wrong type under `non_field_errors`.

The functions keep no state: safe in gunicorn's threads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, ProhibitNullCharactersValidator
from rest_framework import fields, serializers
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.settings import api_settings
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from checkout.services import Customer, LineItem
from foundation.phone_numbers import E164, E164_MAX_LENGTH, E164_MESSAGE, e164_validate
from money.amounts import AmountError, amount_check_minor_units, amount_parse
from money.currencies import ISO_4217_CODES, MAX_MINOR_UNITS

# The body's limits (the serializer declares the same ones for the OpenAPI schema).
CUSTOMER_NAME_MAX_LENGTH = 200
# RFC 5321's longest deliverable address.
EMAIL_MAX_LENGTH = 254
LOCALE_MAX_LENGTH = 16
# The locale of a customer sent without one.
DEFAULT_LOCALE = "en"
LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
LOCALE_MESSAGE = "Enter a locale such as en, pt or pt-BR."
MAX_LINES = 100
SKU_MAX_LENGTH = 64
LINE_NAME_MAX_LENGTH = 200
QUANTITY_MIN = 1
QUANTITY_MAX = 10_000
# 10 integer digits, as the columns hold (and money.currencies.MAX_MINOR_UNITS decimals).
AMOUNT_MAX_INTEGER_DIGITS = 10
CURRENCY_LENGTH = 3
PAYMENT_TOKEN_MAX_LENGTH = 64

# DRF's IntegerField: longer text is refused before int() reads it; "2.0" and "2.00 " are 2.
_INTEGER_TEXT_MAX_LENGTH = fields.IntegerField.MAX_STRING_LENGTH
_INTEGER_ZERO_DECIMALS = fields.IntegerField.re_decimal
_SURROGATE = re.compile("[\ud800-\udfff]")
_EMAIL_MESSAGE = fields.EmailField.default_error_messages["invalid"]
_EMAIL = EmailValidator(message=_EMAIL_MESSAGE)
# The messages of DRF's fields and of the validators they add, by the code DRF gives each.
_FIELD_MESSAGES = fields.Field.default_error_messages
_TEXT_MESSAGES = fields.CharField.default_error_messages
_INTEGER_MESSAGES = fields.IntegerField.default_error_messages
_LIST_MESSAGES = serializers.ListSerializer.default_error_messages
_OBJECT_MESSAGE = serializers.Serializer.default_error_messages["invalid"]
# DRF's answer to a JSON `null` body (Serializer.errors), which it does not translate.
_NO_DATA_MESSAGE = "No data provided"

_MISSING: Any = object()
T = TypeVar("T")


@dataclass(frozen=True)
class CheckoutInput:
    """A checkout body that passed every check: what `checkout_create` takes."""

    customer: Customer
    lines: list[LineItem]
    currency: str
    payment_token: str


def checkout_input_validate(data: object) -> CheckoutInput:
    """The checkout described by `data` (the parsed JSON body).

    Raises DRF's ValidationError with exactly the detail the API's InputSerializer gives: every
    field's errors at once, in the fields' order; the prices' minor units are checked only when
    every field passed (as the serializer's `validate`).
    """
    if data is None:
        raise ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [ErrorDetail(_NO_DATA_MESSAGE, code="null")]})
    body = _object(data)
    errors: dict[str, Any] = {}
    customer = _checked(errors, "customer", _customer, body)
    lines = _checked(errors, "lines", _lines, body)
    currency = _checked(errors, "currency", _currency, body)
    payment_token = _checked(errors, "payment_token", _payment_token, body)
    if errors:
        raise ValidationError(errors)
    _minor_units_check(lines, currency)
    return CheckoutInput(customer=customer, lines=lines, currency=currency, payment_token=payment_token)


def unit_price_parse(value: object) -> Decimal:
    """A line's unit price: a non-negative amount in ASCII digits below 10^10 with at most
    MAX_MINOR_UNITS decimals (the currency's own minor units are checked with the whole body).

    Raises DRF's ValidationError; the serializer's AmountField calls it too.
    """
    try:
        amount = amount_parse(value)
    except AmountError as exc:
        raise serializers.ValidationError(str(exc)) from exc
    if amount.adjusted() >= AMOUNT_MAX_INTEGER_DIGITS:
        raise serializers.ValidationError(f"Enter an amount below 10^{AMOUNT_MAX_INTEGER_DIGITS}.")
    if amount != amount.quantize(Decimal(1).scaleb(-MAX_MINOR_UNITS)):
        raise serializers.ValidationError(f"Enter at most {MAX_MINOR_UNITS} decimal places.")
    return amount


def _checked(errors: dict[Any, Any], name: str, check: Callable[[object], T], data: Mapping[str, Any]) -> T:
    """`check` of the field `name` of `data`; its errors go to `errors[name]` (and None back)."""
    try:
        return check(data.get(name, _MISSING))
    except ValidationError as exc:
        errors[name] = exc.detail
        return None  # type: ignore[return-value]  # never used: the caller raises `errors`


def _fields(value: object, checks: dict[str, Callable[[object], Any]]) -> dict[str, Any]:
    """A nested object's fields, each through its check in order; every field's errors at once."""
    data = _object(_present(value))
    errors: dict[str, Any] = {}
    values = {name: _checked(errors, name, check, data) for name, check in checks.items()}
    if errors:
        raise ValidationError(errors)
    return values


def _customer(value: object) -> Customer:
    return Customer(**_fields(value, {"name": _customer_name, "email": _email, "phone": _phone, "locale": _locale}))


def _customer_name(value: object) -> str:
    return _text(value, max_length=CUSTOMER_NAME_MAX_LENGTH)


def _email(value: object) -> str:
    return _text(value, max_length=EMAIL_MAX_LENGTH, email=True)


def _phone(value: object) -> str:
    return e164_validate(_text(value, max_length=E164_MAX_LENGTH, pattern=E164, pattern_message=E164_MESSAGE))


def _locale(value: object) -> str:
    if value is _MISSING:
        return DEFAULT_LOCALE
    return _text(value, max_length=LOCALE_MAX_LENGTH, pattern=LOCALE, pattern_message=LOCALE_MESSAGE)


def _lines(value: object) -> list[LineItem]:
    """DRF's ListSerializer(allow_empty=False, max_length=MAX_LINES) of lines."""
    items = _present(value)
    if not isinstance(items, list):
        message = _LIST_MESSAGES["not_a_list"].format(input_type=type(items).__name__)
        raise _non_field_error(message, code="not_a_list")
    if not items:
        raise _non_field_error(_LIST_MESSAGES["empty"], code="empty")
    if len(items) > MAX_LINES:
        raise _non_field_error(_LIST_MESSAGES["max_length"].format(max_length=MAX_LINES), code="max_length")
    lines = []
    errors: dict[int, Any] = {}
    for index, item in enumerate(items):
        try:
            lines.append(_line(item))
        except ValidationError as exc:
            errors[index] = exc.detail
    if errors:
        raise ValidationError(errors)
    return lines


def _line(value: object) -> LineItem:
    return LineItem(**_fields(value, {"sku": _sku, "name": _line_name, "quantity": _quantity, "unit_price": _unit_price}))


def _sku(value: object) -> str:
    return _text(value, max_length=SKU_MAX_LENGTH)


def _line_name(value: object) -> str:
    return _text(value, max_length=LINE_NAME_MAX_LENGTH)


def _quantity(value: object) -> int:
    """DRF's IntegerField(min_value=QUANTITY_MIN, max_value=QUANTITY_MAX), refusing text with
    digits other than ASCII 0-9 (int("١٢") is 12 in Python)."""
    number = _present(value)
    if isinstance(number, str) and not number.strip().isascii():
        raise _error(_INTEGER_MESSAGES["invalid"], code="invalid")
    if isinstance(number, str) and len(number) > _INTEGER_TEXT_MAX_LENGTH:
        raise _error(_INTEGER_MESSAGES["max_string_length"], code="max_string_length")
    try:
        quantity = int(_INTEGER_ZERO_DECIMALS.sub("", str(number)))
    except (ValueError, TypeError):
        raise _error(_INTEGER_MESSAGES["invalid"], code="invalid") from None
    # DRF adds the maximum's validator before the minimum's and reports every one that fails.
    if quantity > QUANTITY_MAX:
        raise _error(_INTEGER_MESSAGES["max_value"].format(max_value=QUANTITY_MAX), code="max_value")
    if quantity < QUANTITY_MIN:
        raise _error(_INTEGER_MESSAGES["min_value"].format(min_value=QUANTITY_MIN), code="min_value")
    return quantity


def _unit_price(value: object) -> Decimal:
    return unit_price_parse(_present(value))


def _currency(value: object) -> str:
    currency = _text(value, max_length=CURRENCY_LENGTH, min_length=CURRENCY_LENGTH)
    if currency not in ISO_4217_CODES:
        raise _error(f"'{currency}' is not an ISO 4217 currency code.", code="invalid")
    return currency


def _payment_token(value: object) -> str:
    return _text(value, max_length=PAYMENT_TOKEN_MAX_LENGTH)


def _minor_units_check(lines: list[LineItem], currency: str) -> None:
    """Every price has at most the currency's minor units (JPY 0, BRL 2, KWD 3)."""
    errors = {}
    for index, line in enumerate(lines):
        try:
            amount_check_minor_units(line.unit_price, currency)
        except AmountError as exc:
            errors[index] = {"unit_price": [ErrorDetail(str(exc), code="invalid")]}
    if errors:
        raise ValidationError({"lines": errors})


def _text(
    value: object,
    *,
    max_length: int,
    min_length: int | None = None,
    pattern: re.Pattern[str] | None = None,
    pattern_message: str = "",
    email: bool = False,
) -> str:
    """DRF's CharField: a string (or a number, as text), trimmed, not blank.

    Then its validators, each failing one adding its message, in DRF's order: the `pattern`
    (a RegexValidator passed to the field), the maximum and minimum lengths, null characters,
    surrogates, and last the address check of an EmailField (`email`).
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise _error(_TEXT_MESSAGES["blank"], code="blank")
    else:
        value = _present(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            # An EmailField's "invalid" message is its own, for a value of the wrong type too.
            raise _error(_EMAIL_MESSAGE if email else _TEXT_MESSAGES["invalid"], code="invalid")
        text = str(value)
    problems = []
    if pattern is not None and not pattern.search(text):
        problems.append(ErrorDetail(pattern_message, code="invalid"))
    if len(text) > max_length:
        problems.append(ErrorDetail(_TEXT_MESSAGES["max_length"].format(max_length=max_length), code="max_length"))
    if min_length is not None and len(text) < min_length:
        problems.append(ErrorDetail(_TEXT_MESSAGES["min_length"].format(min_length=min_length), code="min_length"))
    if "\x00" in text:
        null = ProhibitNullCharactersValidator
        problems.append(ErrorDetail(str(null.message), code=null.code))
    surrogate = None if text.isascii() else _SURROGATE.search(text)
    if surrogate is not None:
        code_point = ord(surrogate.group())
        message = ProhibitSurrogateCharactersValidator.message.format(code_point=code_point)
        problems.append(ErrorDetail(message, code=ProhibitSurrogateCharactersValidator.code))
    if email:
        try:
            _EMAIL(text)
        except DjangoValidationError:
            problems.append(ErrorDetail(str(_EMAIL_MESSAGE), code=_EMAIL.code))
    if problems:
        raise ValidationError(problems)
    return text


def _present(value: object) -> Any:
    """`value` unless the field is missing or null, which DRF answers first."""
    if value is _MISSING:
        raise _error(_FIELD_MESSAGES["required"], code="required")
    if value is None:
        raise _error(_FIELD_MESSAGES["null"], code="null")
    return value


def _object(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _non_field_error(_OBJECT_MESSAGE.format(datatype=type(value).__name__), code="invalid")
    return value


def _error(message: str, *, code: str) -> ValidationError:
    return ValidationError([ErrorDetail(str(message), code=code)])


def _non_field_error(message: str, *, code: str) -> ValidationError:
    return ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [ErrorDetail(str(message), code=code)]})
