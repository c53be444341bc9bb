"""`python manage.py erase_personal_data --email ADDRESS | --phone +E164`: erase one person.

Orders (checkout/erasure.py), then triggers, notifications, attempts and suppressions
(notifications/retention.py); a suppression stays in force, matched by its hash.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from checkout.erasure import orders_erase
from notifications.retention import person_erase

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Command(BaseCommand):
    help = "Erase every trace of one person (by email and/or phone) across orders and notifications."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--email", default="", help="The person's email address (any case).")
        parser.add_argument("--phone", default="", help="The person's phone number in E.164, e.g. +447911123456.")

    def handle(self, *args, email: str, phone: str, **options) -> None:  # type: ignore[no-untyped-def]
        email, phone = email.strip(), phone.strip()
        if not (email or phone):
            raise CommandError("Give --email, --phone or both.")
        if email:
            try:
                validate_email(email)
            except ValidationError as exc:
                raise CommandError(f"--email: {exc.messages[0]}") from exc
        if phone and not _E164.match(phone):
            raise CommandError("--phone must be in E.164, e.g. +447911123456.")
        orders = orders_erase(email=email, phone=phone)
        notifications = person_erase(email=email, phone=phone)
        self.stdout.write(
            f"Erased: {orders['orders']} orders, {orders['idempotency_records']} stored answers, "
            f"{notifications.triggers} triggers, {notifications.notifications} notifications, "
            f"{notifications.attempts} attempt errors, {notifications.suppressions} suppression addresses "
            "(the suppressions stay in force)."
        )
