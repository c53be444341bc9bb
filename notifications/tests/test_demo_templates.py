"""The seed's templates: an existing database gets the new texts unless an operator edited them."""

from __future__ import annotations

import json

import pytest

from notifications.configuration import template_save
from notifications.demo import SEED_TEMPLATES, SEED_TEMPLATES_EARLIER, demo_templates_install
from notifications.models import NotificationTemplate

pytestmark = pytest.mark.django_db


def install(rows: list[dict]) -> None:
    for row in rows:
        template_save(template=NotificationTemplate(**row), saved_by="seed")


def test_templates_an_earlier_seed_wrote_are_brought_up_to_date_and_edited_ones_are_kept() -> None:
    install(json.loads(SEED_TEMPLATES_EARLIER.read_text()))
    edited = NotificationTemplate.objects.get(event_type="payment_failed", channel="email", locale="pt")
    edited.body_text = "Olá {{ customer_name }}, texto da operadora."
    template_save(template=edited, saved_by="operator")

    changed = demo_templates_install()

    current = {(r["event_type"], r["channel"], r["locale"]): r for r in json.loads(SEED_TEMPLATES.read_text())}
    assert changed == len(current) - 1
    for template in NotificationTemplate.objects.exclude(pk=edited.pk):
        assert template.body_text == current[(template.event_type, template.channel, template.locale)]["body_text"]
        assert template.versions.count() == 2  # the earlier text stays in the history
    edited.refresh_from_db()
    assert edited.body_text == "Olá {{ customer_name }}, texto da operadora."
    assert demo_templates_install() == 0  # a second run changes nothing
