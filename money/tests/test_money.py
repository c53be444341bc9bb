"""Amounts as customers read them, per locale and currency, and as the API accepts them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from money.amounts import AmountError, amount_check_minor_units, amount_parse, amount_text
from money.currencies import ISO_4217_CODES, currency_minor_units
from money.formatting import locale_currency, money_format

NBSP = "\xa0"


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        ("19.00", "BRL", "pt-BR", f"R${NBSP}19,00"),
        ("19", "BRL", "pt", f"R${NBSP}19,00"),
        ("12345.67", "USD", "en", "$12,345.67"),
        ("12345.67", "USD", "en-US", "$12,345.67"),
        ("1234567.5", "BRL", "pt-BR", f"R${NBSP}1.234.567,50"),
        ("4500", "JPY", "en", "¥4,500"),
        ("4500", "JPY", "ja", "￥4,500"),
        ("1.234", "KWD", "en", "KWD1.234"),
        ("47.30", "EUR", "de-DE", f"47,30{NBSP}€"),
        ("47.30", "EUR", "fr", f"47,30{NBSP}€"),
        ("47.30", "EUR", "en", "€47.30"),
        ("47.3", "GBP", "en-GB", "£47.30"),
        # ISO 4217 gives HUF 2 minor units where CLDR shows none: the exact amount is shown.
        ("1.50", "HUF", "hu", f"1,50{NBSP}Ft"),
        # An unknown region reads as its language, an unknown language as English.
        ("19.00", "BRL", "pt-XX", f"R${NBSP}19,00"),
        ("19.00", "BRL", "zz", "R$19.00"),
    ],
)
def test_money_is_formatted_as_the_locale_writes_it(amount: str, currency: str, locale: str, shown: str) -> None:
    assert money_format(amount, currency, locale) == shown


@pytest.mark.parametrize(("amount", "currency"), [("not a number", "EUR"), ("19.00", "ZZZ"), ("", "")])
def test_money_format_never_raises_on_bad_template_data(amount: str, currency: str) -> None:
    assert money_format(amount, currency, "en") == f"{amount} {currency}".strip()


@pytest.mark.parametrize(("currency", "units"), [("JPY", 0), ("KRW", 0), ("BRL", 2), ("USD", 2), ("HUF", 2), ("KWD", 3), ("BHD", 3)])
def test_minor_units_follow_iso_4217(currency: str, units: int) -> None:
    assert currency_minor_units(currency) == units


def test_every_listed_currency_has_minor_units_a_column_can_hold() -> None:
    assert {currency_minor_units(code) for code in ISO_4217_CODES} == {0, 2, 3}


@pytest.mark.parametrize(
    ("text", "currency"), [("1.234", "KWD"), ("4500", "JPY"), ("19.9", "BRL"), ("19.90", "BRL"), ("0.001", "KWD")]
)
def test_amounts_within_the_currency_minor_units_are_accepted_exactly(text: str, currency: str) -> None:
    amount = amount_parse(text)

    amount_check_minor_units(amount, currency)

    assert amount == Decimal(text)


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("1.5", "JPY", "JPY has no minor unit"),
        ("19.999", "BRL", "BRL allows at most 2 decimal places"),
        ("1.2345", "KWD", "KWD allows at most 3 decimal places"),
    ],
)
def test_more_decimals_than_the_currency_has_are_refused(text: str, currency: str, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        amount_check_minor_units(amount_parse(text), currency)


@pytest.mark.parametrize(
    "value",
    ["١٢", "１２", "১২", "1٫5", "-1", "+1", "1e3", "1,000", "1_000", " ", "", ".5", "5.", "NaN", "Infinity", True, None, [1]],
)
def test_only_ascii_digits_with_an_optional_point_are_amounts(value: object) -> None:
    with pytest.raises(AmountError):
        amount_parse(value)


@pytest.mark.parametrize(("value", "parsed"), [("19.90", "19.90"), (" 7 ", "7"), (19.9, "19.9"), (12, "12")])
def test_json_numbers_and_padded_text_are_amounts(value: object, parsed: str) -> None:
    assert amount_parse(value) == Decimal(parsed)


@pytest.mark.parametrize(
    ("amount", "currency", "text"), [("4500", "JPY", "4500"), ("19", "BRL", "19.00"), ("1.234", "KWD", "1.234"), ("2.5", "KWD", "2.500")]
)
def test_amount_text_has_exactly_the_currency_decimals(amount: str, currency: str, text: str) -> None:
    assert amount_text(Decimal(amount), currency) == text


@pytest.mark.parametrize(("locale", "currency"), [("pt-BR", "BRL"), ("en-US", "USD"), ("ja-JP", "JPY"), ("de-DE", "EUR"), ("pt", None), ("en", None)])
def test_a_locale_with_a_country_names_its_currency(locale: str, currency: str | None) -> None:
    assert locale_currency(locale) == currency
