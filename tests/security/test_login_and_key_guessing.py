"""3. Guessing is throttled: the admin login locks a username and an address out after repeated
failures (django-axes), and wrong API keys from one address get 429 after a limit, even when
the next key is right. "60 wrong admin passwords, then the right one, accepted" was the attack."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_redis import get_redis_connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from checkout.models import ApiClient
from checkout.throttling import auth_failures_key

PASSWORD = "Right-pa55word-for-ops"
LOGIN = "/admin/login/?next=/admin/"


def admin_login(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2 takes most of a second per guess on this machine; the lockout does not care how
    passwords are hashed."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ops(db) -> str:
    get_user_model().objects.create_superuser("ops", "ops@shop.example", PASSWORD)
    return "ops"


@pytest.mark.django_db
def test_the_61st_wrong_password_is_refused_even_when_right(ops: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    failures_before, lockouts_before = sample("beacon_admin_login_failures_total"), sample("beacon_admin_lockouts_total")
    caplog.set_level(logging.WARNING, logger="config.login_protection")

    answers = [admin_login(client, ops, f"wrong-{n}") for n in range(60)]
    right = admin_login(client, ops, PASSWORD)

    assert not any(logged_in(answer) for answer in answers)
    assert right.status_code == 429 and not logged_in(right)
    assert "_auth_user_id" not in client.session
    assert sample("beacon_admin_login_failures_total") - failures_before >= 60
    assert sample("beacon_admin_lockouts_total") > lockouts_before
    assert "admin login locked out" in caplog.text


@pytest.mark.django_db
def test_a_locked_username_is_locked_from_every_address(ops: str, settings) -> None:
    for n in range(settings.AXES_FAILURE_LIMIT):
        admin_login(Client(), ops, "wrong", address=f"198.51.100.{n + 1}")

    assert not logged_in(admin_login(Client(), ops, PASSWORD, address="192.0.2.200"))


@pytest.mark.django_db
def test_an_address_spraying_usernames_is_locked_for_every_username(ops: str, settings) -> None:
    for n in range(settings.AXES_FAILURE_LIMIT):
        admin_login(Client(), f"user{n}", "wrong", address="203.0.113.50")

    assert not logged_in(admin_login(Client(), ops, PASSWORD, address="203.0.113.50"))
    assert logged_in(admin_login(Client(), ops, PASSWORD, address="203.0.113.51"))  # the user is fine elsewhere


@pytest.mark.django_db
def test_a_few_typos_do_not_lock_anyone_out(ops: str, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(client, ops, "typo")

    assert logged_in(admin_login(client, ops, PASSWORD))


@pytest.mark.django_db
def test_a_forged_forwarded_for_does_not_dodge_the_address_lockout(ops: str, settings) -> None:
    for n in range(settings.AXES_FAILURE_LIMIT):
        Client().post(LOGIN, {"username": f"user{n}", "password": "x"}, REMOTE_ADDR="203.0.113.60",
                      HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")

    response = Client().post(LOGIN, {"username": ops, "password": PASSWORD}, REMOTE_ADDR="203.0.113.60",
                             HTTP_X_FORWARDED_FOR="10.9.9.99")
    assert not logged_in(response)


@pytest.mark.django_db
def test_wrong_api_keys_from_one_address_are_throttled_then_even_a_right_key(
    api_client_with_key: tuple[ApiClient, str], settings
) -> None:
    settings.API_AUTH_FAILURE_LIMIT = 5
    _, key = api_client_with_key
    guesser = APIClient(REMOTE_ADDR="203.0.113.80")
    throttled_before = REGISTRY.get_sample_value("beacon_api_auth_failures_total", {"outcome": "throttled"}) or 0

    statuses = [
        guesser.get("/api/v1/checkouts/", HTTP_AUTHORIZATION=f"Bearer bk_0000000{n}_guess").status_code for n in range(8)
    ]
    right = guesser.get("/api/v1/checkouts/", HTTP_AUTHORIZATION=f"Bearer {key}")
    elsewhere = APIClient(REMOTE_ADDR="203.0.113.81").get("/api/v1/checkouts/", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert statuses == [401] * 5 + [429] * 3
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "rate_limited" and int(right["Retry-After"]) > 0
    assert elsewhere.status_code == 200
    assert (REGISTRY.get_sample_value("beacon_api_auth_failures_total", {"outcome": "throttled"}) or 0) - throttled_before == 3


@pytest.mark.django_db
def test_a_blocked_address_is_told_when_its_block_ends_not_the_whole_window_again(
    api_client_with_key: tuple[ApiClient, str], settings
) -> None:
    """Found by a new user: 146 s into a 300 s block, Retry-After still said 301."""
    settings.API_AUTH_FAILURE_LIMIT, settings.API_AUTH_FAILURE_WINDOW = 2, 300
    _, key = api_client_with_key
    guesser = APIClient(REMOTE_ADDR="203.0.113.90")
    for n in range(3):
        guesser.get("/api/v1/checkouts/", HTTP_AUTHORIZATION=f"Bearer bk_0000000{n}_guess")
    get_redis_connection("default").expire(auth_failures_key("203.0.113.90"), 146)  # 154 s have gone by

    wrong = guesser.get("/api/v1/checkouts/", HTTP_AUTHORIZATION="Bearer bk_00000009_guess")
    right = guesser.get("/api/v1/checkouts/", HTTP_AUTHORIZATION=f"Bearer {key}")

    for response in (wrong, right):
        assert response.status_code == 429
        assert 140 <= int(response["Retry-After"]) <= 146
        assert response.json()["error"]["message"].startswith("Too many failed API keys from this address.")
