"""Amounts as a customer of a given locale reads them, through Babel (CLDR data):
`R$ 19,00` (pt-BR), `$12,345.67` (en), `¥4,500` (en, JPY), `1.234 KWD`-style per locale.

`money_format` is THE money formatter: the `money` filter of notification templates (email
and SMS, `notifications.rendering`) and the admin's amount columns call it.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import NumberPattern, get_territory_currencies, parse_pattern

from money.currencies import ISO_4217_CODES, currency_minor_units

# Customers' locales come from API input ("pt-BR", "en"); an unknown one reads English.
FALLBACK_LOCALE = "en"


@lru_cache(maxsize=256)
def _babel_locale(locale: str) -> Locale:
    """The locale, else its language ("pt-XX" reads as "pt"), else English."""
    for candidate in (locale.replace("_", "-"), locale.replace("_", "-").split("-")[0], FALLBACK_LOCALE):
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    raise AssertionError("the fallback locale always parses")


@lru_cache(maxsize=512)
def _currency_pattern(locale: Locale, decimals: int) -> NumberPattern:
    """The locale's currency pattern showing exactly `decimals` decimals (ISO's, not CLDR's)."""
    pattern = copy.copy(parse_pattern(locale.currency_formats["standard"]))
    pattern.frac_prec = (decimals, decimals)
    return pattern


def money_locale_load(locale: str) -> None:
    """Read `locale`'s CLDR data now. Babel loads it on first use, once per process and locale:
    about 0.1 s of CPU, several times that in wall time on a busy machine. A render budget
    calls this before its clock starts, so a template is never charged for it."""
    _currency_pattern(_babel_locale(str(locale or FALLBACK_LOCALE)), 2)


def money_format(amount: Decimal | str | int, currency: str, locale: str = FALLBACK_LOCALE) -> str:
    """`amount` in `currency` as `locale` writes it, with the currency's ISO minor units.

    Never raises for data a template might hold: an amount that is not a number, or a code
    that is not an ISO currency, comes back as plain "<amount> <currency>" text.
    """
    try:
        value = Decimal(str(amount))
        decimals = currency_minor_units(str(currency))
    except (ArithmeticError, KeyError, ValueError):
        return f"{amount} {currency}".strip()
    babel_locale = _babel_locale(str(locale or FALLBACK_LOCALE))
    return _currency_pattern(babel_locale, decimals).apply(value, babel_locale, currency=currency, currency_digits=False)


def locale_currency(locale: str) -> str | None:
    """The currency in use today in the locale's country ("pt-BR" -> "BRL"); None for a
    locale without a country ("pt", "en") or a currency that is not an ISO 4217 one here."""
    territory = _babel_locale(locale).territory
    currencies = get_territory_currencies(territory) if territory else []
    return next((code for code in currencies if code in ISO_4217_CODES), None)
