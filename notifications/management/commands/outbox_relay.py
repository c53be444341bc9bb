"""`python manage.py outbox_relay [--once]`: hand undispatched triggers to Celery.

Beat runs the same service every OUTBOX_RELAY_INTERVAL seconds; this command is for
operators, and for running a relay as a process of its own.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from notifications.outbox import outbox_relay


class Command(BaseCommand):
    help = "Hand undispatched notification triggers to Celery (the outbox relay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: object, once: bool, batch_size: int, **options: object) -> None:
        while True:
            handed = outbox_relay(batch_size=batch_size)
            self.stdout.write(f"handed over {handed} triggers")
            if once:
                return
            if handed < batch_size:
                time.sleep(settings.OUTBOX_RELAY_INTERVAL)
