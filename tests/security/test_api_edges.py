"""6. The edges the attack found: deeply nested JSON and hostile Idempotency-Keys get the API's
JSON errors (not HTML), the docs and schema are not public by default, and HTML pages carry a
Content-Security-Policy."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from checkout.api_keys import api_client_create
from checkout.parsers import json_nesting_exceeds
from harness.database import current_database_url
from harness.processes import ManagedProcess, free_port, gunicorn, stack_env, wait_until

URL = "/api/v1/checkouts/"
BODY = {
    "customer": {"name": "Ana Souza", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
    "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "9.50"}],
    "currency": "BRL",
    "payment_token": "tok_ok",
}


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [33, 900, 1000, 30_000])
def test_deeply_nested_json_is_a_json_400(api: APIClient, depth: int) -> None:
    body = '{"customer": ' + "[" * depth + "]" * depth + "}"

    response = api.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "malformed_request"
    assert "nested deeper than 32 levels" in response.json()["error"]["message"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert not json_nesting_exceeds(json.dumps({"note": "[" * 1000, "lines": [[[]]]}).encode(), 32)
    assert json_nesting_exceeds(b'{"a": "]]]]", "b": ' + b"[" * 40 + b"]" * 40 + b"}", 32)
    assert not json_nesting_exceeds(b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 32)


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["a" * 256, "a\tb", "caf\u00e9-order-1", "  "])
def test_a_hostile_idempotency_key_is_a_json_400_and_writes_nothing(api: APIClient, key: str) -> None:
    from checkout.models import Order

    response = api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert Order.objects.count() == 0


@pytest.fixture
def web(tmp_path: Path, settings) -> Iterator[int]:
    port = free_port()
    env = stack_env(database_url=current_database_url(), redis_url=settings.REDIS_URL, SECRET_KEY=settings.SECRET_KEY,
                    CACHE_KEY_PREFIX=f"beacon-edges-{uuid.uuid4().hex[:8]}")
    process: ManagedProcess = gunicorn(env, port=port, workers=1, threads=2, log_dir=tmp_path).start()
    try:
        wait_until(lambda: _answers(port), timeout=60, what="gunicorn")
        yield port
    finally:
        process.stop()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def raw_post(port: int, headers: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = (b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + headers +
               b"\r\n" + body)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, payload


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_10000_character_idempotency_key_reaches_the_api_through_gunicorn(web: int) -> None:
    """gunicorn answered its own HTML 431 for a header over 8 KiB; config/gunicorn.conf.py now
    lets such a header through to Django, which answers the API's JSON 400."""
    _, key = api_client_create(name="edges")
    auth = f"Authorization: Bearer {key}\r\n".encode()

    status, headers, payload = raw_post(web, auth + b"Idempotency-Key: " + b"k" * 10_000 + b"\r\n", json.dumps(BODY).encode())

    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(payload)["error"]["code"] == "invalid_idempotency_key"


@pytest.mark.django_db
def test_the_schema_and_docs_need_a_key_or_an_admin_session(api: APIClient, settings) -> None:
    anonymous = APIClient()
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", password="x", is_staff=True))

    assert anonymous.get("/api/schema/").status_code == 401
    assert anonymous.get("/api/docs/").status_code == 401
    assert anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()["error"]["code"] == "authentication_required"
    assert api.get("/api/schema/").status_code == 200
    assert staff.get("/api/docs/").status_code == 200
    settings.API_DOCS_ACCESS = "public"
    assert anonymous.get("/api/schema/").status_code == 200
    settings.API_DOCS_ACCESS = "off"
    assert api.get("/api/schema/").status_code == 404


@pytest.mark.django_db
def test_admin_and_docs_pages_carry_a_content_security_policy(admin_client: Client) -> None:
    pages = [admin_client.get("/admin/"), admin_client.get("/admin/notifications/vendor/"),
             admin_client.get("/api/docs/"), Client().get("/admin/login/")]

    for page in pages:
        assert page.status_code == 200
        policy = page["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    # The docs page keeps to it: every script is a file of Beacon's, none inline.
    docs = pages[2].content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", docs) == []


def test_beacons_own_templates_have_no_inline_script_the_policy_would_block() -> None:
    root = Path(__file__).resolve().parents[2] / "templates"
    for path in root.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text), f"{path}: an inline event handler"
        assert not re.findall(r"<script(?![^>]*\bsrc=)", text), f"{path}: an inline <script>"
