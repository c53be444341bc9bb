"""Active ISO 4217 currency codes and their minor units (the list maintained by SIX, as of 2025)."""

from __future__ import annotations

ISO_4217_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
    GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD
    KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN
    NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP
    SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

# ISO 4217's minor units where they are not 2. Babel's `get_currency_precision` is CLDR's
# display convention, which differs from ISO for some (CLDR shows HUF, IDR and COP without
# decimals although ISO gives them 2): amounts are validated and stored by ISO's table.
_MINOR_UNITS_OTHER_THAN_TWO: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}

# The most minor units any listed currency has: the scale amounts are stored with.
MAX_MINOR_UNITS = 3

def currency_minor_units(currency: str) -> int:
    """Decimal places an amount in `currency` may have (JPY 0, BRL 2, KWD 3).

    Raises KeyError for a code that is not an active ISO 4217 currency.
    """
    if currency not in ISO_4217_CODES:
        raise KeyError(currency)
    return _MINOR_UNITS_OTHER_THAN_TWO.get(currency, 2)
