"""8. Property tests (hypothesis): money totals are exact, phone numbers and email addresses are
validated as documented, and hostile customer data in a template stays data."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from checkout.tests.factories import VALID_CHECKOUT, checkout_body
from notifications.rendering import template_render

pytestmark = pytest.mark.django_db

SEED_TEMPLATES = json.loads(open("templates/notifications/seed_templates.json").read())
ORDER_EMAIL = next(t for t in SEED_TEMPLATES if t["event_type"] == "order_confirmed" and t["channel"] == "email" and t["locale"] == "en")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Hypothesis runs many examples inside one test (and one database transaction): fixtures are shared on purpose.
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("9999999999.99"), places=2, allow_nan=False, allow_infinity=False)
lines = st.lists(
    st.fixed_dictionaries(
        {"sku": st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True), "name": st.just("Item"),
         "quantity": st.integers(min_value=1, max_value=10_000), "unit_price": prices}
    ),
    min_size=1,
    max_size=8,
)


@PROPERTY_SETTINGS
@given(order_lines=lines)
def test_order_totals_are_the_exact_sum_of_quantity_times_unit_price(api, order_lines: list[dict]) -> None:
    sent = [{**line, "unit_price": str(line["unit_price"])} for line in order_lines]

    response = api.post("/api/v1/checkouts/", checkout_body(lines=sent, currency="EUR"), format="json")

    assert response.status_code == 201, response.json()
    order = response.json()
    expected = sum((line["unit_price"] * line["quantity"] for line in order_lines), Decimal("0"))
    assert Decimal(order["total"]) == expected
    assert [Decimal(line["line_total"]) for line in order["lines"]] == [
        line["unit_price"] * line["quantity"] for line in order_lines
    ]


mobile_numbers = st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)).map(
    lambda region: phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
).filter(lambda number: number is not None).map(
    lambda number: phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
)


@PROPERTY_SETTINGS
@given(phone=mobile_numbers)
def test_valid_e164_numbers_are_accepted(api, phone: str) -> None:
    response = api.post("/api/v1/checkouts/", checkout_body(customer={**VALID_CHECKOUT["customer"], "phone": phone}), format="json")

    assert response.status_code == 201, (phone, response.json())
    assert response.json()["customer"]["phone"] == phone


not_e164 = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"0\d{6,12}", fullmatch=True),  # national format
    st.from_regex(r"\+0\d{6,12}", fullmatch=True),  # no country code starts with 0
    st.from_regex(r"\+\d{1,5}", fullmatch=True),  # too short
    st.from_regex(r"\+[1-9]\d{15,20}", fullmatch=True),  # too long
    st.from_regex(r"\+44 ?7911 ?123 ?456", fullmatch=True).filter(lambda s: " " in s),  # spaces
)


@PROPERTY_SETTINGS
@given(phone=not_e164)
def test_anything_but_e164_is_refused_with_400(api, phone: str) -> None:
    assume(not E164.match(phone))

    response = api.post("/api/v1/checkouts/", checkout_body(customer={**VALID_CHECKOUT["customer"], "phone": phone}), format="json")

    assert response.status_code == 400
    assert "phone" in response.json()["error"]["fields"]["customer"]


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z0-9]([a-z0-9_+-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z]{2,10}", fullmatch=True),
)


@PROPERTY_SETTINGS
@given(email=emails)
def test_valid_email_addresses_are_accepted(api, email: str) -> None:
    response = api.post("/api/v1/checkouts/", checkout_body(customer={**VALID_CHECKOUT["customer"], "email": email}), format="json")

    assert response.status_code == 201, (email, response.json())


@PROPERTY_SETTINGS
@given(email=st.one_of(st.text(max_size=30).filter(lambda s: "@" not in s), st.from_regex(r"[a-z]{1,8}@", fullmatch=True),
                       st.from_regex(r"@[a-z]{1,8}\.[a-z]{2,4}", fullmatch=True), st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}@[a-z]{2,4}", fullmatch=True)))
def test_malformed_email_addresses_are_refused_with_400(api, email: str) -> None:
    response = api.post("/api/v1/checkouts/", checkout_body(customer={**VALID_CHECKOUT["customer"], "email": email}), format="json")

    assert response.status_code == 400
    assert "email" in response.json()["error"]["fields"]["customer"]


hostile = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{ 7*7 }}", "{% if 1 %}x{% endif %}",
                     "&lt;already&gt;", "' OR 1=1 --", "</p><iframe src=//evil>"]),
)


@settings(max_examples=300, deadline=None)
@given(name=hostile, item=hostile)
def test_hostile_customer_data_is_escaped_in_html_and_stays_text_in_text(name: str, item: str) -> None:
    context = {
        "customer_name": name, "order_ref": "AB12CD34", "currency": "EUR", "total": "1.00",
        "lines": [{"quantity": 1, "name": item, "line_total": "1.00"}],
    }

    rendered = template_render(
        subject=ORDER_EMAIL["subject"], body_text=ORDER_EMAIL["body_text"], body_html=ORDER_EMAIL["body_html"], context=context
    )

    # HTML: the values appear escaped, so no tag or attribute of theirs reaches the markup.
    assert f"<p>Hi {escape(name)},</p>" in rendered.html
    assert f"× {escape(item)}: " in rendered.html
    if "<" in name:
        # Not one more occurrence of the raw value than the template's own markup has (a name
        # of "<" or ",</p" also occurs in the markup around it).
        plain = template_render(
            subject=ORDER_EMAIL["subject"], body_text=ORDER_EMAIL["body_text"], body_html=ORDER_EMAIL["body_html"],
            context={**context, "customer_name": "", "lines": [{"quantity": 1, "name": "", "line_total": "1.00"}]},
        )
        assert rendered.html.count(name) == plain.html.count(name)
    # Text: the values arrive as they are (a plain-text email has nothing to escape) and are never evaluated.
    assert f"Hi {name},\n" in rendered.text
    assert f"1 × {item}: €1.00" in rendered.text
