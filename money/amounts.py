"""Amounts: parsed from ASCII text only, checked against the currency's minor units, written
back as text with exactly the currency's decimals (the API's and the templates' form)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from money.currencies import currency_minor_units

# ASCII digits only: Python's Decimal() also reads "١٢" (Arabic-Indic) or "１２" (full-width) as
# 12, so a name a person checks and the amount charged could disagree. No sign, no exponent.
_AMOUNT_TEXT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?")


class AmountError(ValueError):
    """The text is not an amount, or has more decimals than its currency allows."""


def amount_parse(value: object) -> Decimal:
    """A non-negative Decimal from text like "19.90" (or a JSON number); raises AmountError.

    Accepts only ASCII digits with an optional decimal point: no sign, exponent, thousands
    separator or other script's digits.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise AmountError("Enter an amount as text, e.g. \"19.90\".")
    text = value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if not _AMOUNT_TEXT.fullmatch(text):
        raise AmountError("Enter an amount with ASCII digits 0-9 and an optional decimal point, e.g. \"19.90\".")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # unreachable for text the pattern accepted; kept for safety
        raise AmountError("Enter a valid amount.") from exc


def amount_check_minor_units(amount: Decimal, currency: str) -> None:
    """Raises AmountError when `amount` has more decimals than `currency` has minor units."""
    units = currency_minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-units)):
        if units == 0:
            raise AmountError(f"{currency} has no minor unit: enter a whole number.")
        raise AmountError(f"{currency} allows at most {units} decimal places.")


def amount_text(amount: Decimal, currency: str) -> str:
    """The amount with exactly the currency's decimals: "19.00" BRL, "4500" JPY, "1.234" KWD.

    Exact for amounts that passed `amount_check_minor_units`; never rounds one that did.
    """
    return f"{Decimal(amount).quantize(Decimal(1).scaleb(-currency_minor_units(currency))):f}"
