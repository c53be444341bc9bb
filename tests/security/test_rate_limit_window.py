"""6. The API rate limit is a sliding window: a client cannot spend its minute at :59 and a
second minute at :00 (the fixed window admitted twice the limit across the boundary)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from checkout import throttling
from checkout.models import ApiClient

URL = "/api/v1/checkouts/"
LIMIT = 10
MINUTE = 60 * 29_000_000  # some minute's start, in seconds since the epoch


@pytest.fixture
def limited(api_client_with_key: tuple[ApiClient, str]) -> APIClient:
    client, key = api_client_with_key
    ApiClient.objects.filter(pk=client.pk).update(rate_limit_per_minute=LIMIT)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def statuses_at(api: APIClient, monkeypatch: pytest.MonkeyPatch, at: float, count: int) -> list[int]:
    monkeypatch.setattr(throttling, "_clock", lambda: at)
    return [api.get(URL).status_code for _ in range(count)]


@pytest.mark.django_db
def test_no_double_burst_across_a_minute_boundary(limited: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    before = statuses_at(limited, monkeypatch, MINUTE + 59.5, LIMIT)
    after = statuses_at(limited, monkeypatch, MINUTE + 60.5, LIMIT)

    assert before == [200] * LIMIT
    assert after.count(200) == 0  # one second later, the whole minute's worth is still counted
    assert sum(status == 200 for status in before + after) <= LIMIT


@pytest.mark.django_db
def test_the_previous_minute_weighs_less_as_the_window_slides(limited: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    statuses_at(limited, monkeypatch, MINUTE + 30, LIMIT)

    halfway = statuses_at(limited, monkeypatch, MINUTE + 90, LIMIT)  # half of the last minute is behind us
    later = statuses_at(limited, monkeypatch, MINUTE + 181, LIMIT)  # the burst has left the window

    assert halfway.count(200) == LIMIT // 2
    assert later == [200] * LIMIT


@pytest.mark.django_db
def test_refused_requests_are_told_when_to_come_back(limited: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    statuses_at(limited, monkeypatch, MINUTE + 50, LIMIT)
    monkeypatch.setattr(throttling, "_clock", lambda: MINUTE + 50)
    refused = limited.get(URL)

    wait = int(refused["Retry-After"])
    assert refused.status_code == 429 and wait > 0
    assert statuses_at(limited, monkeypatch, MINUTE + 50 + wait, 1) == [200]
    assert statuses_at(limited, monkeypatch, MINUTE + 50 + wait, 1) == [429]  # one request's room, no more
