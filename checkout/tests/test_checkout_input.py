"""The checkout body's validator answers exactly as the API's DRF serializer did: the same
validated data, or the same error document (status, JSON text in its key order, codes).

The serializer (CheckoutListCreateApi.InputSerializer) is the oracle: it still publishes the
body in the OpenAPI schema, and every body here, a corpus written out field by field and bodies
drawn by hypothesis, goes through both. No database: validation reads none.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from checkout.apis import CheckoutListCreateApi
from checkout.checkout_input import checkout_input_validate
from checkout.exceptions import api_exception_handler
from checkout.tests.factories import CHECKOUTS_URL, VALID_CHECKOUT

InputSerializer = CheckoutListCreateApi.InputSerializer
LINE = VALID_CHECKOUT["lines"][0]
MISSING = object()

# Values a JSON body can carry that no field of a checkout wants, or wants only in some forms:
# null, blanks, booleans, numbers of every kind (1e400 parses as infinity), containers, null and
# surrogate characters, other scripts' digits, and text with spaces around it.
ODD_VALUES: list[Any] = [
    None, "", "   ", "\t\n", "\u00a0", "\u3000", True, False, 0, 1, -1, 7, 1.5, 2.0, -0.0, 1e20,
    float("inf"), float("-inf"), 10**30, -(10**30), [], [1], ["a"], {}, {"a": 1}, "x", "\x00", "a\x00b",
    "\ud800", "x\udfff", "é", "١٢", "１２", "😀", " padded ", "null", "true", "0", "-1", "1e3",
]


def texts(max_length: int) -> list[Any]:
    """Text around `max_length`: at it and past it, in ASCII and not, with spaces that DRF trims."""
    return [
        "x" * max_length, "x" * (max_length + 1), "é" * max_length, "é" * (max_length + 1),
        " " + "x" * max_length + " ", "\ud83d" * (max_length + 1), "\x00" * (max_length + 1),
        "x" * (max_length - 1) + "\x00", "Ünïcödé ✓", 12345, 1.25,
    ]


FIELD_VALUES: dict[str, list[Any]] = {
    "customer": ["Ana", {"name": "Ana"}, [VALID_CHECKOUT["customer"]], {}],
    "customer.name": ["Ana Souza", "  Ana  ", *texts(200)],
    "customer.email": [
        "ana@example.com", "not-an-email", "a@b", "ana@exämple.com", "ana@[127.0.0.1]", "ana@[::1]", "a" * 250 + "@x.com",
        "x" * 64 + "@" + "y" * 185 + ".com", " ANA@EXAMPLE.COM ", "ana@example.com\x00", "@example.com", "ana@", "ana@localhost",
        "ana@-bad.com", "ana@@example.com", "ana@example.com.", "ana.@example.com", '"ana souza"@example.com', "ana@ex ample.com",
        "ána@example.com", *texts(254),
    ],
    "customer.phone": [
        "+5511987654321", "011 98765-4321", "+12", "+4479111234567890", "+447911123456", "+١٢٣٤٥٦٧٨٩٠١", "+0123456789",
        " +447911123456 ", "+44 7911 123456", "+999999999999", 447911123456, 4.47911123456e11, "+1" + "2" * 14, "+1" + "2" * 15,
        "+1 800 FLOWERS", "+15555555555", "+80012345678", "+4479111234\n", *texts(16),
    ],
    "customer.locale": [
        MISSING, "en", "pt", "pt-BR", "fil", "fil-PH", "pt-br", "PT", "portuguese", "pt_BR", "xx-XXX", "en\n", "ąę", "e",
        "x" * 16, "x" * 17, "pt-BR-x", *texts(16),
    ],
    "lines": ["many", {}, {"0": LINE}, [None], [1], [[]], [{}], [LINE] * 100, [LINE] * 101, [None] * 101, [LINE, None, 3, LINE]],
    "lines.0": [{}, {"sku": "MUG"}, [LINE], "line", {**LINE, "extra": [1, 2]}],
    "lines.0.sku": ["MUG", *texts(64)],
    "lines.0.name": ["Mug", *texts(200)],
    "lines.0.quantity": [
        1, 10_000, 10_001, "2", " 2 ", "2.0", "2.00 ", "2.5", "02", "+5", "1_000", "0x10", "١٢", "１２", "x" * 1001,
        "1" * 1001, "1" * 1000, " " * 1001, "٣" * 1001, 1e4, 1e5, 9999.0, -5, 3.0000000001,
    ],
    "lines.0.unit_price": [
        "19.90", "0", "0.001", "19.901", "-1.00", "+1", "1e2", "١٢", 19.9, 19, 0, "", " 19.90 ", "10000000000",
        "9999999999.999", "9999999999.9991", "1,000.00", 1e10, 1e-5, 1e16, "nan", "Infinity", ".5", "5.", "1" * 16,
        "1." + "0" * 15, 10**12, 12.5,
    ],
    "currency": ["EUR", "eur", "JPY", "KWD", "XYZ", "EU", "EURO", " EUR ", 978, 97.8, "€", "E\x00R", "E\ud800R", "€€€"],
    "payment_token": ["tok_ok", "tok_declined", *texts(64)],
}

# Prices against their currency's minor units: field by field they pass, the body as a whole may not.
MINOR_UNIT_BODIES: list[tuple[str, list[Any]]] = [
    ("JPY", ["4500", "1.5", "10.50", "10.0", 4500, 12.5]),
    ("KWD", ["1.234", "1.2340", "0.001"]),
    ("BRL", ["1.001", "9.5", "19.90", 9.999]),
    ("BHD", ["1.0005"]),
    ("CLP", ["1", "1.000", "0.1"]),
]


def body_with(path: str, value: Any) -> Any:
    """VALID_CHECKOUT with the field at `path` (dotted, a line by its index) set to `value`,
    or left out when `value` is MISSING."""
    body = copy.deepcopy(VALID_CHECKOUT)
    *parents, name = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(name) if isinstance(target, list) else name
    if value is MISSING:
        del target[key]
    else:
        target[key] = value
    return body


def answer_of(validate: Any, body: Any) -> tuple[str, Any]:
    """("valid", the validated data with types) or ("invalid", the error as the API answers it)."""
    try:
        data = validate(body)
    except ValidationError as exc:
        response = api_exception_handler(exc, {})
        return "invalid", (response.status_code, JSONRenderer().render(response.data).decode(), exc.get_codes())
    # repr keeps the order of keys and the types: Decimal("19.90") is not Decimal("19.9").
    return "valid", repr(data)


def serializer_validate(body: Any) -> dict[str, Any]:
    serializer = InputSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validator_validate(body: Any) -> dict[str, Any]:
    checkout = checkout_input_validate(body)
    return {
        "customer": asdict(checkout.customer),
        "lines": [asdict(line) for line in checkout.lines],
        "currency": checkout.currency,
        "payment_token": checkout.payment_token,
    }


def disagreements(bodies: list[Any]) -> list[str]:
    found = []
    for body in bodies:
        expected, got = answer_of(serializer_validate, body), answer_of(validator_validate, body)
        if got != expected:
            found.append(f"body {body!r:.300}\n  serializer: {expected!r:.600}\n  validator:  {got!r:.600}")
    return found


def test_a_valid_checkout_gives_the_same_data_as_the_serializer() -> None:
    assert answer_of(validator_validate, VALID_CHECKOUT)[0] == "valid"
    assert disagreements([VALID_CHECKOUT]) == []


@pytest.mark.parametrize("path", list(FIELD_VALUES))
def test_every_kind_of_value_in_a_field_gets_the_serializers_answer(path: str) -> None:
    values = FIELD_VALUES[path] + (ODD_VALUES if path != "customer" else []) + [MISSING]
    bodies = [body_with(path, value) for value in values]

    assert disagreements(bodies) == []


def test_bodies_that_are_not_an_object_get_the_serializers_answer() -> None:
    bodies = [None, [], [VALID_CHECKOUT], "", "checkout", 0, 1.5, True, {}, {"unknown": 1}]

    assert disagreements(bodies) == []


def test_unknown_fields_are_ignored_as_the_serializer_ignores_them() -> None:
    body = body_with("customer.nickname", "Aninha")
    body["lines"][1]["discount"] = "5.00"
    body["coupon"] = {"code": "X"}

    assert answer_of(validator_validate, body) == answer_of(validator_validate, VALID_CHECKOUT)
    assert disagreements([body]) == []


def test_errors_in_every_field_at_once_are_reported_in_the_serializers_order() -> None:
    body = {
        "payment_token": "",
        "currency": "xx",
        "lines": [LINE, {"sku": "", "quantity": "x", "unit_price": "-1"}, None, LINE, 5],
        "customer": {"phone": "+1", "email": "no", "locale": "English", "name": None},
    }

    assert answer_of(validator_validate, body)[0] == "invalid"
    assert disagreements([body]) == []


@pytest.mark.parametrize(("currency", "prices"), MINOR_UNIT_BODIES)
def test_prices_beyond_the_currencys_minor_units_get_the_serializers_answer(currency: str, prices: list[Any]) -> None:
    single = [body_with("lines", [{**LINE, "unit_price": price}]) | {"currency": currency} for price in prices]
    together = body_with("lines", [{**LINE, "unit_price": price} for price in prices]) | {"currency": currency}
    # A minor-unit error is only checked once every field passed: never together with a field error.
    with_a_field_error = together | {"payment_token": ""}

    assert disagreements([*single, together, with_a_field_error]) == []


# Hypothesis: whole bodies, each field drawn from its corpus above or from anything JSON can hold.
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from(ODD_VALUES),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def field(path: str, *, good: list[Any] | None = None) -> st.SearchStrategy[Any]:
    corpus = [value for value in FIELD_VALUES[path] if value is not MISSING]
    return st.sampled_from(good) if good else st.one_of(st.sampled_from(corpus), json_values)


def fields_of(values: dict[str, st.SearchStrategy[Any]], *, all_present: bool) -> st.SearchStrategy[dict[str, Any]]:
    """An object with `values`' fields (unless `all_present`, any may be left out) and maybe unknown ones."""
    extras = st.dictionaries(st.sampled_from(["extra", "id", "Name", ""]), json_values, max_size=2)
    known = st.fixed_dictionaries(values) if all_present else st.fixed_dictionaries({}, optional=values)
    return st.tuples(known, extras).map(lambda pair: {**pair[1], **pair[0]})


def bodies(*, mostly_valid: bool) -> st.SearchStrategy[Any]:
    good = {
        "customer.name": ["Ana", "Ünïcödé ✓", " Ana "], "customer.email": ["ana@example.com", "A@B.CO"],
        "customer.phone": ["+5511987654321", "+447911123456"], "customer.locale": ["en", "pt-BR"],
        "lines.0.sku": ["MUG", "x" * 64], "lines.0.name": ["Mug"], "lines.0.quantity": [1, "2", 10_000, "3.0"],
        "lines.0.unit_price": ["19.90", "4500", "1.234", 7, "0.5", "9999999999.999"],
        "currency": ["EUR", "JPY", "KWD", "CLP"], "payment_token": ["tok_ok"],
    }

    def pick(path: str) -> st.SearchStrategy[Any]:
        return field(path, good=good[path] if mostly_valid else None)

    customer = fields_of({name: pick(f"customer.{name}") for name in ("name", "email", "phone", "locale")}, all_present=mostly_valid)
    line = fields_of({name: pick(f"lines.0.{name}") for name in ("sku", "name", "quantity", "unit_price")}, all_present=mostly_valid)
    if not mostly_valid:
        customer = customer | json_values
        line = line | json_values
    lines = st.lists(line, min_size=1 if mostly_valid else 0, max_size=4)
    if not mostly_valid:
        lines = lines | st.lists(line, min_size=100, max_size=101) | json_values
    top = {"customer": customer, "lines": lines, "currency": pick("currency"), "payment_token": pick("payment_token")}
    body = fields_of(top, all_present=mostly_valid)
    return body if mostly_valid else body | json_values


@settings(max_examples=300, deadline=None)
@given(body=bodies(mostly_valid=True))
def test_drawn_bodies_of_good_values_get_the_serializers_answer(body: Any) -> None:
    assert disagreements([body]) == []


@settings(max_examples=300, deadline=None)
@given(body=bodies(mostly_valid=False))
def test_drawn_bodies_of_any_values_get_the_serializers_answer(body: Any) -> None:
    assert disagreements([body]) == []


@pytest.mark.django_db
def test_the_api_answers_a_bad_checkout_with_the_serializers_error_document(api: APIClient) -> None:
    body = body_with("lines", [LINE, {**LINE, "quantity": 0, "unit_price": "١٢"}, None]) | {"currency": "eur"}
    serializer = InputSerializer(data=body)
    assert not serializer.is_valid()

    response = api.post(CHECKOUTS_URL, body, format="json")

    assert response.status_code == 400
    assert response.content.decode() == answer_of(serializer_validate, body)[1][1]
    assert response.json()["error"]["fields"] == {
        "lines": {
            "1": {
                "quantity": ["Ensure this value is greater than or equal to 1."],
                "unit_price": ['Enter an amount with ASCII digits 0-9 and an optional decimal point, e.g. "19.90".'],
            },
            "2": ["This field may not be null."],
        },
        "currency": ["'eur' is not an ISO 4217 currency code."],
    }
