"""TRIGGER_LISTENER_DISPATCH_THREADS is read strictly: a count out of bounds stops the process at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "TRIGGER_LISTENER_DISPATCH_THREADS"


def settings_loaded(value: str | None) -> subprocess.CompletedProcess:
    """A fresh process loading the settings with NAME set to `value` (None: unset)."""
    environment = {k: v for k, v in os.environ.items() if k != NAME} | {"DJANGO_SETTINGS_MODULE": "config.settings"}
    if value is not None:
        environment[NAME] = value
    return subprocess.run([sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; print(settings.{NAME})"],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", ["-1", "257"])
def test_a_dispatch_thread_count_out_of_bounds_is_refused_with_its_name(value: str) -> None:
    loaded = settings_loaded(value)

    assert loaded.returncode != 0
    assert f"{NAME} must be between 0 and 256" in loaded.stderr


def test_the_dispatch_thread_count_defaults_to_eight_and_its_bounds_are_allowed() -> None:
    assert settings_loaded(None).stdout.strip() == "8"
    assert settings_loaded("0").stdout.strip() == "0"
    assert settings_loaded("256").stdout.strip() == "256"
