"""`python manage.py create_api_client NAME`: prints the new key as the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from checkout.api_keys import api_client_create
from checkout.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its key (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rate-limit", type=int, default=0, help="Requests per minute (0: the default).")

    def handle(self, *args: object, name: str, rate_limit: int, **options: object) -> None:
        if not name.strip():
            raise CommandError("NAME must not be empty.")
        if rate_limit < 0:
            raise CommandError("--rate-limit must be 0 or more.")
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"An API client named {name!r} already exists.")
        client, key = api_client_create(name=name, rate_limit_per_minute=rate_limit)
        self.stderr.write(f"Created API client {client.name!r} (id {client.pk}). Store this key now; it is not shown again:")
        self.stdout.write(key)
