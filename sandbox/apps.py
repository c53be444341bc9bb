from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Fake third-party vendors (SMTP, Twilio-compatible HTTP). Shares no code with the sender."""

    name = "sandbox"
