from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from harness.processes import broker_purge
from notifications.models import Notification
from notifications.sweeper import notifications_sweep
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch

pytestmark = pytest.mark.django_db


@pytest.fixture
def forgotten(templates: None, settings) -> Notification:
    """A pending notification whose queued message was lost 10 seconds ago."""
    broker_purge(settings.CELERY_BROKER_URL)
    notification = dispatch(make_trigger())["sms"]
    Notification.objects.filter(pk=notification.pk).update(updated_at=timezone.now() - timedelta(seconds=10))
    yield notification
    broker_purge(settings.CELERY_BROKER_URL)


def test_the_sweeper_leaves_work_alone_until_the_stale_setting_says_it_was_lost(forgotten: Notification, settings) -> None:
    settings.NOTIFICATION_SWEEP_STALE_SECONDS = 60

    assert notifications_sweep() == 0


def test_the_sweeper_requeues_sooner_when_the_stale_setting_is_lowered(forgotten: Notification, settings) -> None:
    settings.NOTIFICATION_SWEEP_STALE_SECONDS = 5

    assert notifications_sweep() == 1
    assert notifications_sweep() == 0  # touched by the first sweep: not queued twice in a row
