"""Take the README's admin screenshots against a real stack: gunicorn (not Django's test
server, which serves static files itself), a Celery worker, the sandbox vendors, and a few
minutes of real checkouts.

    DATABASE_URL=postgres://root@127.0.0.1:5432/any REDIS_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python scripts/admin_screenshots.py [--out docs/screenshots] [--minutes 4]

It creates the database `beacon_screenshots` on DATABASE_URL's server (dropped first if it
exists, and again at the end), runs `collectstatic`, and writes vendor-list.png,
template-preview-pt-BR.png and overview.png. Look at them before committing them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.database import database_drop, database_url  # noqa: E402 -- after the path is set
from harness.stack import Stack, StackOptions  # noqa: E402

DATABASE = "beacon_screenshots"
ADMIN_PASSWORD = "screenshots-admin"
CHROMIUM = "/usr/bin/chromium"
# Checkouts per round of traffic, and seconds between rounds (a few bars per minute).
CHECKOUTS_PER_ROUND = (3, 5, 2, 6, 4, 1, 5, 3)
ROUND_SECONDS = 12
CIRCUITS_RESET = (
    "from notifications.models import Vendor; from notifications.routing import vendor_circuit; "
    "[vendor_circuit(vendor).reset() for vendor in Vendor.objects.all()]"
)


def checkout(web: str, key: str, number: int) -> None:
    """One real checkout: mostly pt-BR in reais, some en in dollars, every seventh declined."""
    brazilian = number % 3 != 0
    body = {
        "customer": {
            "name": "Ana Souza" if brazilian else "Sam Lee",
            "email": f"customer{number}@example.com",
            "phone": "+5511987654321" if brazilian else "+447911123456",
            "locale": "pt-BR" if brazilian else "en",
        },
        "lines": [{"sku": "MUG", "name": "Caneca" if brazilian else "Mug", "quantity": 2, "unit_price": "9.50"}],
        "currency": "BRL" if brazilian else "USD",
        "payment_token": "tok_declined" if number % 7 == 0 else "tok_ok",
    }
    response = requests.post(f"{web}/api/v1/checkouts/", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code in (201, 402), response.text


def traffic(web: str, key: str, control: str, minutes: float) -> None:
    """Rounds of checkouts for `minutes`: for a while SMTP is slow (latencies differ), later the
    primary SMS vendor is down (its circuit opens and the fallback takes over)."""
    faults = {8: ("smtp-primary", {"latency_ms": 120}), 16: ("smtp-primary", None),
              22: ("sms-primary", {"outage": True}), 32: ("sms-primary", None)}
    deadline, number, round_index = time.monotonic() + minutes * 60, 0, 0
    while time.monotonic() < deadline:
        if round_index in faults:
            name, fault = faults[round_index]
            if fault is None:
                requests.delete(f"{control}/instances/{name}/faults", timeout=5)
            else:
                requests.put(f"{control}/instances/{name}/faults", json=fault, timeout=5)
        for _ in range(CHECKOUTS_PER_ROUND[round_index % len(CHECKOUTS_PER_ROUND)]):
            number += 1
            checkout(web, key, number)
        round_index += 1
        time.sleep(ROUND_SECONDS)
    print(f"{number} checkouts sent")


def screenshots(web: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(base_url=web, viewport={"width": 1500, "height": 900})
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", ADMIN_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
        stylesheet = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
        assert stylesheet not in ("rgba(0, 0, 0, 0)", "transparent"), "the admin's stylesheet did not load"

        page.goto("/admin/notifications/vendor/")
        page.locator("#result_list tr", has_text="sms-primary").locator("input.action-select").check()
        page.select_option("select[name=action]", "force_circuit_open")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist")
        page.screenshot(path=str(out / "vendor-list.png"), full_page=True)

        page.goto("/admin/notifications/notificationtemplate/?channel__exact=email&event_type__exact=order_confirmed&locale__exact=en")
        page.click("#result_list a:text('Preview')")
        page.wait_for_selector("#template-preview")
        with page.expect_navigation():
            page.select_option("#locale", "pt-BR")
        page.screenshot(path=str(out / "template-preview-pt-BR.png"), full_page=True)

        page.goto("/admin/notifications/notification/overview/?refresh=0")
        page.wait_for_selector("#chart-latency")
        page.screenshot(path=str(out / "overview.png"), full_page=True)
        browser.close()
    print(f"screenshots in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to send checkouts before the screenshots")
    args = parser.parse_args()
    server_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    static_root = tempfile.mkdtemp(prefix="beacon-static-")
    stack = Stack(StackOptions(
        log_dir=Path(tempfile.mkdtemp(prefix="beacon-screenshots-")),
        database_url=database_url(server_url, DATABASE),
        redis_url=redis_url,
        broker_url=redis_url,
        settings={"DEBUG": "false", "STATIC_ROOT": static_root, "CACHE_KEY_PREFIX": f"beacon-screenshots-{os.getpid()}"},
        worker_metrics=True,
        collectstatic=True,
    ))
    web = stack.base_url
    try:
        stack.database_create()
        seeded = stack.manage("seed_demo", "--sandbox-base-port", str(stack.sandbox_port), "--admin-password",
                              ADMIN_PASSWORD, "--web-url", web)
        key = seeded.strip().splitlines()[-1]
        # Vendor ids restart with the fresh database; their breakers in Redis must too.
        stack.manage("shell", "-c", CIRCUITS_RESET)
        stack.services_start()
        stack.processes_start(beat=False)
        traffic(web, key, stack.sandbox.base_url, args.minutes)
        args.out.mkdir(parents=True, exist_ok=True)
        screenshots(web, args.out)
    finally:
        stack.stop()
        stack.manage("shell", "-c", CIRCUITS_RESET)
        database_drop(stack.database_url)
        shutil.rmtree(static_root, ignore_errors=True)

if __name__ == "__main__":
    main()
