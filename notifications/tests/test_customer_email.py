"""What a customer receives after a real checkout, read from the sandbox's inboxes: money in
their locale's format, a complete HTML document, and a text part saying the same."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from rest_framework.test import APIClient

from notifications.models import NotificationTrigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db
NBSP = "\xa0"


class _BodyText(HTMLParser):
    """The text a reader sees in an HTML body: list items as "- " lines, head left out."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._in_body = self._in_body or tag == "body"
        if tag == "li":
            self.parts.append("\n- ")

    def handle_endtag(self, tag: str) -> None:
        self._in_body = self._in_body and tag != "body"
        if tag in ("p", "li", "ul"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_body:
            self.parts.append(data)


def words(text: str) -> list[str]:
    return text.split()


def body_words(html: str) -> list[str]:
    parser = _BodyText()
    parser.feed(html)
    return words("".join(parser.parts))


def checkout(api: APIClient, *, locale: str, currency: str, unit_price: str, token: str = "tok_ok") -> dict:  # noqa: S107
    response = api.post(
        "/api/v1/checkouts/",
        {
            "customer": {"name": "Ana Souza", "email": "ana@example.com", "phone": "+5511987654321", "locale": locale},
            "lines": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": unit_price}],
            "currency": currency,
            "payment_token": token,
        },
        format="json",
    )
    assert response.status_code in (201, 402), response.content
    return response.json().get("order", response.json())


def deliver(order: dict) -> None:
    """Run the order's notifications through the sandbox vendors as a worker would."""
    trigger = NotificationTrigger.objects.get(subject_ref=f"order:{order['id']}")
    for notification in dispatch(trigger).values():
        assert run_until_settled(notification.pk).status == "sent"


def test_a_pt_br_checkout_email_and_sms_show_reais_as_brazilians_write_them(
    api: APIClient, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    deliver(checkout(api, locale="pt-BR", currency="BRL", unit_price="9.50"))

    [email] = sandbox.control.messages("smtp-primary")
    [sms] = sandbox.control.messages("sms-primary")
    assert f"Total: R${NBSP}19,00" in email["text"]
    assert f"- 2 × Mug: R${NBSP}19,00" in email["text"]
    assert f"R${NBSP}19,00" in email["html"]
    assert "BRL" not in email["text"] and "19.00" not in email["text"]
    assert "total R$ 19,00" in sms["text"]  # a plain space: GSM-7 has no no-break space (one segment)


@pytest.mark.parametrize(
    ("locale", "currency", "unit_price", "total", "greeting"),
    [("pt-BR", "BRL", "9.50", f"R${NBSP}19,00", "Olá Ana Souza,"),
     ("en", "USD", "6172.83", "$12,345.66", "Hi Ana Souza,"),
     ("en", "JPY", "2250", "¥4,500", "Hi Ana Souza,")],
    ids=["pt-BR", "en-USD", "en-JPY"],
)
def test_the_email_is_a_whole_html_document_whose_text_part_says_the_same(
    api: APIClient, vendors: dict, templates: None, sandbox: SandboxHandle,
    locale: str, currency: str, unit_price: str, total: str, greeting: str,
) -> None:
    deliver(checkout(api, locale=locale, currency=currency, unit_price=unit_price))

    [email] = sandbox.control.messages("smtp-primary")
    html = email["html"].replace("\r\n", "\n")  # SMTP's line endings
    assert html.startswith("<!DOCTYPE html>\n")
    assert f'<html lang="{locale}">' in html
    assert '<meta charset="utf-8">' in html
    assert "<body>\n" in html and html.endswith("</body>\n</html>\n")
    assert f"<title>{email['subject']}</title>" in html
    # The sign-off and every other word of the text part, in the same order, and nothing else.
    assert words(email["text"])[-2:] == ["Beacon", "Shop"]
    assert body_words(html) == words(email["text"])
    assert greeting in email["text"] and f"Total: {total}" in email["text"]


def test_a_declined_payment_is_worded_by_the_customer_locale_template(
    api: APIClient, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    order = checkout(api, locale="pt-BR", currency="BRL", unit_price="9.50", token="tok_declined")
    assert order["payment_error"] == "The card was declined."  # the API client's view, in English

    deliver(order)

    [email] = sandbox.control.messages("smtp-primary")
    assert "o cartão foi recusado." in email["text"]
    assert f"pagamento de R${NBSP}19,00" in email["text"]
    for english in ("declined", "card was", "The "):
        assert english not in email["text"] and english not in email["html"]
    assert body_words(email["html"]) == words(email["text"])
