"""The project's own app: hooks that belong to no domain app (admin login protection)."""

from __future__ import annotations

from django.apps import AppConfig


class BeaconConfig(AppConfig):
    name = "config"
    label = "beacon_config"
    verbose_name = "Beacon"

    def ready(self) -> None:
        from config import login_protection  # noqa: F401  (signal receivers)
