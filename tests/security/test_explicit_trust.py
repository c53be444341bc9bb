"""5. Trust of the network is explicit: only a proxy named in TRUSTED_PROXIES may say a request
came over HTTPS or from another address; a leftover development `.env` cannot weaken a
deployed process; /metrics decides on the real client address."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_a_client_reaching_gunicorn_directly_cannot_claim_https(settings) -> None:
    response = Client().get("/admin/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 301 and response["Location"].startswith("https://")


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, TRUSTED_PROXIES=["10.0.0.0/8"],
                   SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_a_named_proxy_may_say_the_request_came_over_https() -> None:
    client = Client()

    through_proxy = client.get("/admin/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    forged = client.get("/admin/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")

    assert through_proxy.status_code == 200
    assert forged.status_code == 301


def test_the_proxy_ssl_header_is_set_only_with_trusted_proxies(settings) -> None:
    assert settings.TRUSTED_PROXIES == [] and settings.SECURE_PROXY_SSL_HEADER is None


@pytest.mark.django_db
@override_settings(TRUSTED_PROXIES=["127.0.0.1/32"], METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"], METRICS_TOKEN="")
def test_metrics_go_by_the_client_a_named_proxy_forwards_for() -> None:
    client = Client()

    # A proxy on loopback that forwards for nobody no longer makes everyone local.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200
    # The left-most entries are the client's own words: only the proxy's (right-most) entry counts.
    forged = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3, 203.0.113.9")
    assert forged.status_code == 403


@pytest.mark.django_db
def test_metrics_refuse_a_peer_forwarding_for_others_that_nobody_named() -> None:
    client = Client()

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def settings_of_a_process(env_file: Path, **environment: str) -> dict[str, str]:
    """DEBUG and the HTTPS settings of a fresh process started with `environment` only."""
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    base = {key: os.environ[key] for key in ("PATH", "DATABASE_URL", "REDIS_URL") if key in os.environ}
    base["PAYMENT_GATEWAY"] = "checkout.payments.SandboxPaymentGateway"  # a deployed process names its gateway
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**base, "BEACON_ENV_FILE": str(env_file), **environment},
    )
    assert result.returncode == 0, result.stderr
    debug, redirect, cookie, hsts = result.stdout.split()
    return {"DEBUG": debug, "SECURE_SSL_REDIRECT": redirect, "SESSION_COOKIE_SECURE": cookie, "HSTS": hsts,
            "stderr": result.stderr}


@pytest.fixture
def leftover_env(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text("DEBUG=true\nSECRET_KEY=dev-key-written-by-make-run\n")
    return path


@pytest.mark.slow
def test_a_leftover_development_env_file_cannot_weaken_a_deployed_process(leftover_env: Path) -> None:
    deployed = settings_of_a_process(leftover_env, SECRET_KEY="production-secret-" + "x" * 40, ALLOWED_HOSTS="shop.example")

    assert deployed["DEBUG"] == "False"
    assert deployed["SECURE_SSL_REDIRECT"] == deployed["SESSION_COOKIE_SECURE"] == "True"
    assert int(deployed["HSTS"]) > 0
    assert "ignoring" in deployed["stderr"] and "BEACON_DEVELOPMENT" in deployed["stderr"]


@pytest.mark.slow
def test_the_env_file_still_serves_development(leftover_env: Path) -> None:
    assert settings_of_a_process(leftover_env)["DEBUG"] == "True"
    developer = settings_of_a_process(leftover_env, SECRET_KEY="exported-in-a-shell", BEACON_DEVELOPMENT="true")
    assert developer["DEBUG"] == "True"
