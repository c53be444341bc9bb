"""Constants and helpers of the browser tests, shared by their conftest.py and test modules.

Not a test module: tests import it instead of the conftest (tests/test_test_modules_stand_alone.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
ADMIN_PASSWORD = "browser-admin-pw"
# Seconds a send queued in the admin gets to reach the sandbox.
DELIVERY_TIMEOUT = 30


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def login(page, username: str, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
