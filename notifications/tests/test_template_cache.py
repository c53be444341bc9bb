"""The template cache: Redis in front of PostgreSQL, invalidated in one place."""

from __future__ import annotations

import socket

import pytest
from django.core.cache import cache

from notifications import template_cache
from notifications.configuration import template_save
from notifications.models import NotificationTemplate
from notifications.template_cache import (
    template_cache_invalidate,
    template_cache_stats_recent,
    template_resolve,
    templates_resolve,
)

pytestmark = pytest.mark.django_db


def _sms_template() -> NotificationTemplate:
    return template_save(
        template=NotificationTemplate(event_type="order_confirmed", channel="sms", locale="en", body_text="v1 {{ order_ref }}")
    )


def test_a_second_lookup_is_served_from_redis_without_a_query(django_assert_num_queries) -> None:
    _sms_template()
    template_resolve(event_type="order_confirmed", channel="sms", locale="en")

    with django_assert_num_queries(0):
        found = template_resolve(event_type="order_confirmed", channel="sms", locale="en-GB")

    assert found is not None and found.body_text == "v1 {{ order_ref }}"


def test_a_triggers_channels_are_read_in_one_round_trip_and_each_is_rebuilt_on_its_own(monkeypatch) -> None:
    sms = _sms_template()
    template_save(
        template=NotificationTemplate(
            event_type="order_confirmed", channel="email", locale="en", subject="s", body_text="email v1"
        )
    )
    both = ["email", "sms"]
    templates_resolve(event_type="order_confirmed", channels=both, locale="en")  # both cached now
    reads = []
    monkeypatch.setattr(template_cache, "cache", _ReadsCounted(cache, reads))

    found = templates_resolve(event_type="order_confirmed", channels=both, locale="en-GB")

    assert len(reads) == 1
    assert (found["email"].body_text, found["sms"].body_text) == ("email v1", "v1 {{ order_ref }}")
    NotificationTemplate.objects.filter(pk=sms.pk).update(body_text="sms v2")
    template_cache_invalidate(event_type="order_confirmed", channel="sms")

    found = templates_resolve(event_type="order_confirmed", channels=both, locale="en")

    assert (found["email"].body_text, found["sms"].body_text) == ("email v1", "sms v2")
    assert templates_resolve(event_type="order_confirmed", channels=["push"], locale="en") == {"push": None}


def test_an_entry_built_from_rows_read_before_a_change_is_never_served_after_it() -> None:
    template = _sms_template()
    template_resolve(event_type="order_confirmed", channel="sms", locale="en")
    stale_entry = cache.get(template_cache._key("order_confirmed", "sms"))
    NotificationTemplate.objects.filter(pk=template.pk).update(body_text="v2")
    template_cache_invalidate(event_type="order_confirmed", channel="sms")
    # A slow rebuilder that read the old rows writes its entry after the invalidation:
    cache.set(template_cache._key("order_confirmed", "sms"), stale_entry)

    assert template_resolve(event_type="order_confirmed", channel="sms", locale="en").body_text == "v2"


def test_lookups_fall_back_to_the_database_when_redis_is_down(settings) -> None:
    _sms_template()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{dead_port}/0"}}

    found = template_resolve(event_type="order_confirmed", channel="sms", locale="en")

    assert found is not None and found.body_text == "v1 {{ order_ref }}"


def test_hits_and_misses_are_summed_in_redis_for_every_process(monkeypatch) -> None:
    _sms_template()
    before_hits, before_misses = template_cache_stats_recent()
    monkeypatch.setattr(template_cache, "_stats_pending", {"hit": 0, "miss": 0})  # earlier tests' counts
    monkeypatch.setattr(template_cache, "_stats_next_flush", 0.0)
    template_resolve(event_type="order_confirmed", channel="sms", locale="en")  # miss, flushed at once
    template_resolve(event_type="order_confirmed", channel="sms", locale="en")  # hit, pending
    monkeypatch.setattr(template_cache, "_stats_next_flush", 0.0)
    template_resolve(event_type="order_confirmed", channel="sms", locale="en")  # hit, flushes both

    hits, misses = template_cache_stats_recent()
    assert (hits - before_hits, misses - before_misses) == (2, 1)


class _ReadsCounted:
    """The real cache, with each `get_many` call's keys recorded in `reads`."""

    def __init__(self, real, reads: list) -> None:
        self._real, self._reads = real, reads

    def get_many(self, keys):
        self._reads.append(keys)
        return self._real.get_many(keys)

    def __getattr__(self, name: str):
        return getattr(self._real, name)
