"""The admin and the API docs as production serves them: a real gunicorn, DEBUG off, the files
collected by the release step (deploy/release) and served by WhiteNoise. Not the test server,
which serves static files itself and so hid that gunicorn served none.

Every request the browser makes to a host other than this gunicorn is refused and recorded:
the pages must work with no network but loopback (no CDN).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from harness.processes import ManagedProcess, free_port, gunicorn, stack_env, wait_until
from harness.testdb import current_database_url
from tests.browser.helpers import ADMIN_PASSWORD, CHROMIUM, ROOT, SCREENSHOTS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("BEACON_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} is missing (apt-get install chromium)",
    ),
]

# Django admin's --header-bg (#417690); an unstyled page has a transparent header.
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"
RELEASE_TIMEOUT = 180
REDOC_BRANDING_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def production_web(django_db_setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn with production settings on the test database, after the release step; its URL."""
    log_dir = tmp_path_factory.mktemp("gunicorn-static")
    env = stack_env(
        database_url=current_database_url(),
        redis_url=settings.REDIS_URL,
        broker_url=settings.CELERY_BROKER_URL,
        DEBUG="false",
        STATIC_ROOT=str(log_dir / "staticfiles"),
        ALLOWED_HOSTS="127.0.0.1",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        CACHE_KEY_PREFIX=f"beacon-static-{uuid.uuid4().hex[:8]}",
    )
    env.pop("BEACON_TESTING", None)  # production settings, not the suite's
    release = subprocess.run(
        ["deploy/release"], cwd=ROOT, env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        capture_output=True, text=True, timeout=RELEASE_TIMEOUT, check=False,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    port = free_port()
    web: ManagedProcess = gunicorn(env, port=port, workers=1, threads=4, log_dir=log_dir).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
                   timeout=60, what=f"gunicorn ({web.log_path})")
        yield url
    finally:
        web.stop()


@pytest.fixture
def offline_page(browser, production_web: str) -> Iterator[tuple[object, list[str]]]:
    """A page on the production gunicorn whose requests elsewhere are aborted and listed."""
    context = browser.new_context(base_url=production_web, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    elsewhere: list[str] = []
    own_host = urlsplit(production_web).netloc

    def only_loopback(route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    yield context.new_page(), elsewhere
    context.close()


def admin_login(page) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def test_the_admin_is_styled_by_the_stylesheet_gunicorn_serves(
    offline_page, admin_user: User, production_web: str
) -> None:
    page, elsewhere = offline_page
    stylesheets = []
    page.on("response", lambda response: stylesheets.append(response) if response.url.endswith(".css") else None)

    admin_login(page)

    base_css = [response for response in stylesheets if "/static/admin/css/base." in response.url]
    assert base_css, [response.url for response in stylesheets]
    # A content-hashed name, served as CSS and cacheable for ever (a deploy changes the name).
    assert base_css[-1].status == 200
    assert base_css[-1].headers["content-type"].startswith("text/css")
    assert "immutable" in base_css[-1].headers.get("cache-control", "")
    assert page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor") == ADMIN_HEADER_BACKGROUND
    assert elsewhere == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin-under-gunicorn.png"), full_page=True)


def test_gunicorn_sends_the_compressed_copy_to_a_browser_that_accepts_it(production_web: str) -> None:
    login_page = urllib.request.urlopen(f"{production_web}/admin/login/", timeout=10).read().decode()
    css_path = next(part.split('"')[0] for part in login_page.split('href="')[1:] if "admin/css/base." in part)
    request = urllib.request.Request(f"{production_web}{css_path}", headers={"Accept-Encoding": "br, gzip"})

    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "br"


def test_the_api_docs_list_the_operations_with_no_network_but_loopback(offline_page, admin_user: User) -> None:
    page, elsewhere = offline_page
    admin_login(page)  # a staff session may read the docs whoever else may

    page.goto("/api/docs/")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()

    assert any("/api/v1/checkouts/" in path for path in paths), paths
    assert elsewhere == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api-docs-offline.png"), full_page=True)

    page.goto("/api/redoc/")
    page.wait_for_selector("text=/api/v1/checkouts/", state="attached")
    # The one outside reference left is compiled into Redoc's bundle: its branding logo, which
    # it hides when the image does not load (templates/api_docs/redoc.html).
    assert [url for url in elsewhere if url != REDOC_BRANDING_LOGO] == []
