"""Every error under /api/ is JSON with a stable code, DEBUG on or off, and the README says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from foundation.api_errors import API_ERROR_CODES

URL = "/api/v1/checkouts/"


def error_code(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]["code"]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        f"{URL}not-a-uuid/",
        f"{URL}00000000-0000-0000-0000-000000000000/",
        "/api/v1/no-such-thing/",
        "/api/v2/checkouts/",
        "/api/",
    ],
)
def test_unknown_resources_answer_not_found_json(api: APIClient, debug: bool, path: str) -> None:
    response = api.get(path)

    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert response.json()["error"]["message"]


@pytest.mark.django_db
def test_an_order_of_another_client_is_not_found(api: APIClient, debug: bool) -> None:
    other = APIClient()
    from checkout.api_keys import api_client_create

    _, key = api_client_create(name="someone-else")
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    created = other.post(
        URL,
        {
            "customer": {"name": "A", "email": "a@example.com", "phone": "+5511987654321", "locale": "en"},
            "lines": [{"sku": "S", "name": "N", "quantity": 1, "unit_price": "1.00"}],
            "currency": "USD",
            "payment_token": "tok_ok",
        },
        format="json",
    )
    assert created.status_code == 201

    response = api.get(f"{URL}{created.json()['id']}/")

    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.django_db
def test_wrong_method_answers_method_not_allowed_json(api: APIClient, debug: bool) -> None:
    response = api.delete(URL)

    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


@pytest.mark.django_db
def test_unacceptable_accept_header_answers_not_acceptable(api: APIClient, debug: bool) -> None:
    response = api.get(URL, HTTP_ACCEPT="image/png")

    assert response.status_code == 406
    assert error_code(response) == "not_acceptable"


@pytest.mark.django_db
def test_a_server_bug_answers_internal_error_json_without_a_traceback(
    api: APIClient, debug: bool, monkeypatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug with a secret in its message")

    monkeypatch.setattr("checkout.apis.notifications_for_subject", broken)
    created = api.post(
        URL,
        {
            "customer": {"name": "A", "email": "a@example.com", "phone": "+5511987654321", "locale": "en"},
            "lines": [{"sku": "S", "name": "N", "quantity": 1, "unit_price": "1.00"}],
            "currency": "USD",
            "payment_token": "tok_ok",
        },
        format="json",
    )
    api.raise_request_exception = False

    response = api.get(f"{URL}{created.json()['id']}/")

    assert response.status_code == 500
    assert error_code(response) == "internal_error"
    assert b"secret" not in response.content
    assert b"Traceback" not in response.content


@pytest.mark.django_db
def test_pages_outside_the_api_keep_django_error_pages(client, debug: bool) -> None:
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_readme_error_table_lists_exactly_the_api_error_codes() -> None:
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    section = readme.split("## The API", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "situation" not in line]
    documented: dict[str, int] = {}
    for row in rows:
        answer = row.split(" | ")[-1]
        for status, code in re.findall(r"\b(\d{3}) `(?:\{\"error\": \{\"code\": \")?([a-z_]+)", answer):
            documented[code] = int(status)

    assert documented == API_ERROR_CODES
