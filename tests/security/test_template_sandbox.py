"""9. Operator-written templates cannot reach settings, secrets or anything with side effects:
rendering runs in Jinja2's immutable sandbox with plain JSON data as its only context."""

from __future__ import annotations

import pytest
from django.conf import settings

from notifications.configuration import template_save
from notifications.models import Notification, NotificationTemplate
from notifications.rendering import TemplateRenderError, template_render
from notifications.sending import notification_send
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch
from sandbox.testing import SandboxHandle

# Each must fail to render (TemplateRenderError) or render nothing that reveals or changes anything.
ESCAPES = [
    "{{ settings }}",
    "{{ settings.SECRET_KEY }}",
    "{{ config }}",
    "{{ request }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''|attr('__class__') }}",
    "{{ lines.append(1) }}",
    "{{ lines.pop() }}",
    "{{ payload.update({'total': '0.00'}) }}",
    "{{ lines[0].clear() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__self__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ customer_name.__class__.__base__.__subclasses__() }}",
    "{{ '{0.__class__}'.format(customer_name) }}",
    "{{ customer_name.format_map({}) }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% set x = lines.append(1) %}{{ lines }}",
    "{{ import('os') }}",
    "{{ __import__('os').system('id') }}",
    "{{ getattr(lines, 'append') }}",
]
DANGEROUS_OUTPUT = ("<class", "<function", "<module", "<built-in", "subprocess", "uid=", "SECRET_KEY", "{'", "[1]")


def context() -> dict:
    return {
        "customer_name": "Ana",
        "order_ref": "AB12CD34",
        "total": "47.30",
        "currency": "EUR",
        "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "47.30", "line_total": "47.30"}],
        "payload": {"total": "47.30"},
    }


@pytest.mark.parametrize("source", ESCAPES)
@pytest.mark.parametrize("part", ["body_text", "body_html", "subject"])
def test_a_template_cannot_reach_outside_its_data(source: str, part: str) -> None:
    data = context()
    parts = {"subject": "s", "body_text": "t", "body_html": "", part: source}

    try:
        rendered = template_render(**parts, context=data)
    except TemplateRenderError:
        rendered = None

    if rendered is not None:
        output = getattr(rendered, {"body_text": "text", "body_html": "html", "subject": "subject"}[part])
        assert not any(marker in output for marker in DANGEROUS_OUTPUT), output
        assert settings.SECRET_KEY not in output
    assert data == context(), "the template changed its context"


@pytest.mark.django_db
def test_a_hostile_template_is_refused_on_save_and_harmless_if_stored_anyway(
    vendors: dict, sandbox: SandboxHandle
) -> None:
    from django.core.exceptions import ValidationError

    hostile = NotificationTemplate(
        event_type="order_confirmed", channel="sms", locale="en",
        body_text="{{ cycler.__init__.__globals__ }} {{ ''.__class__.__mro__ }}",
    )
    with pytest.raises(ValidationError, match="sandbox forbids"):  # saving renders the sample first
        template_save(template=hostile, saved_by="attacker")
    hostile.save()  # stored anyway (before that check existed, or by a direct write)
    trigger = make_trigger()
    assert "sms" not in dispatch(trigger)  # failed at dispatch: never queued for sending
    notification = Notification.objects.get(trigger=trigger, channel="sms")

    notification_send(notification_id=notification.pk)  # a stray send changes nothing

    notification.refresh_from_db()
    assert notification.status == "failed"
    assert "sandbox forbids" in notification.last_error
    assert sandbox.control.messages("sms-primary") == sandbox.control.messages("sms-fallback") == []


@pytest.mark.django_db
def test_a_template_that_does_not_parse_is_refused_on_save() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        template_save(
            template=NotificationTemplate(event_type="order_confirmed", channel="sms", locale="en", body_text="{{ x.__class__ "),
            saved_by="attacker",
        )
