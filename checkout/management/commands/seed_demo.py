"""`python manage.py seed_demo`: an admin, an API client, sandbox vendors, default templates.

Safe to run again, and it never deletes data: it creates what is missing, re-points the
vendors at the sandbox, and rotates the `demo` client's key (keys are stored hashed, so an
old one cannot be shown again). The client itself is kept, so its orders are too; the
previous key stops working, and the output says so.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from checkout.api_keys import api_client_create, api_client_key_rotate
from checkout.models import ApiClient
from notifications.demo import demo_templates_install, demo_vendors_install

DEMO_CLIENT = "demo"
SANDBOX_DEFAULT_PORTS = {"sms-primary": 1, "sms-fallback": 2, "smtp-primary": 25, "smtp-fallback": 26}


class Command(BaseCommand):
    help = "Seed demo data: admin user, API client (prints its key), sandbox vendors, templates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sandbox-host", default="127.0.0.1")
        parser.add_argument("--sandbox-base-port", type=int, default=int(os.environ.get("SANDBOX_BASE_PORT", "8100")))
        parser.add_argument("--admin-password", default=os.environ.get("BEACON_ADMIN_PASSWORD", ""))
        parser.add_argument("--web-url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}", help="For the printed links.")

    @transaction.atomic
    def handle(
        self, *args: object, sandbox_host: str, sandbox_base_port: int, admin_password: str, web_url: str, **options: object
    ) -> None:
        user_model = get_user_model()
        admin = user_model.objects.filter(username="admin").first()
        if admin is None:
            admin_password = admin_password or secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@beacon.example", admin_password)
            admin_line = f"Admin: {web_url}/admin/  user admin  password {admin_password}"
        elif admin_password:
            admin.set_password(admin_password)
            admin.save(update_fields=["password"])
            admin_line = f"Admin: {web_url}/admin/  user admin  password {admin_password}"
        else:
            admin_line = f"Admin: {web_url}/admin/  user admin  (password unchanged)"

        ports = {name: sandbox_base_port + offset for name, offset in SANDBOX_DEFAULT_PORTS.items()}
        vendors = demo_vendors_install(host=sandbox_host, ports=ports)
        created_templates = demo_templates_install()

        # Orders reference their client (PROTECT): rotate the key of the existing client, never delete it.
        client = ApiClient.objects.filter(name=DEMO_CLIENT).first()
        if client is None:
            _, key = api_client_create(name=DEMO_CLIENT)
            key_note = ""
        else:
            key = api_client_key_rotate(client=client)
            key_note = f"; its previous key is revoked, its {client.orders.count()} order(s) are kept"

        self.stdout.write(admin_line)
        self.stdout.write(f"Vendors: {', '.join(vendor.name for vendor in vendors)} (sandbox at {sandbox_host}:{sandbox_base_port})")
        self.stdout.write(f"Templates created: {created_templates}")
        # The key stays the last line: scripts (and the tests) read it from there.
        self.stdout.write(f"API key of client '{DEMO_CLIENT}' (shown once{key_note}):")
        self.stdout.write(key)
