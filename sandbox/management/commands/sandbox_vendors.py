"""`python manage.py sandbox_vendors`: serve the fake vendors in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from dataclasses import replace
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sandbox.server import DEFAULT_BASE_PORT, InstanceConfig, SandboxServer, ServerConfig
from sandbox.tls import TLS_MODES
from sandbox.twilio_api import DEFAULT_AUTH_TOKEN, DEFAULT_SENDERS, TwilioAccount


class Command(BaseCommand):
    help = "Run the sandbox vendors (Twilio-compatible HTTP, SMTP) and their control API on loopback."
    # The sandbox stands for the outside world: it needs no database, URLs or models of Beacon.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--base-port",
            type=int,
            default=DEFAULT_BASE_PORT,
            help="Control API on this port, sms-primary +1, sms-fallback +2, smtp-primary +25, "
            "smtp-fallback +26, esp-primary +30, esp-fallback +31. 0 picks free ports.",
        )
        parser.add_argument(
            "--twilio-auth-token",
            default=DEFAULT_AUTH_TOKEN,
            help="Password the Twilio instances require (default %(default)s); '' accepts any.",
        )
        parser.add_argument("--smtp-auth", metavar="USER:PASSWORD", help="Require SMTP AUTH with these credentials.")
        parser.add_argument(
            "--dedupe",
            default="",
            metavar="NAME[,NAME]",
            help="Instances that stand for a vendor deduping by idempotency key (default: none, as real vendors).",
        )
        parser.add_argument(
            "--twilio-from",
            action="append",
            metavar="NUMBER",
            help=f"A From number the Twilio accounts own (repeatable; default {', '.join(DEFAULT_SENDERS)}).",
        )
        parser.add_argument(
            "--smtp-tls",
            choices=TLS_MODES,
            default="off",
            help="SMTP STARTTLS on a generated certificate: 'trusted' (its CA file is printed), "
            "'untrusted' (self-signed) or 'off' (default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = ServerConfig.default(host=options["host"], base_port=options["base_port"])
        deduping = {name.strip() for name in options["dedupe"].split(",") if name.strip()}
        if unknown := deduping - {i.name for i in config.instances}:
            raise CommandError(f"--dedupe: unknown instance(s) {', '.join(sorted(unknown))}")
        config = replace(config, instances=tuple(replace(i, dedupe=i.name in deduping) for i in config.instances))
        config = replace(config, instances=tuple(self._configure(i, options) for i in config.instances))
        # aiosmtpd logs every command of every session at INFO on "mail.log": far too chatty here.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            SandboxServer(config).serve_forever(on_ready=self._print_endpoints)
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc}") from exc
        self.stdout.write("sandbox vendors stopped")

    def _configure(self, instance: InstanceConfig, options: dict[str, Any]) -> InstanceConfig:
        if instance.kind == "twilio":
            account = TwilioAccount(senders=tuple(options["twilio_from"] or DEFAULT_SENDERS))
            return replace(instance, auth_token=options["twilio_auth_token"] or None, twilio_account=account)
        instance = replace(instance, smtp_tls=options["smtp_tls"])
        if options["smtp_auth"]:
            user, sep, password = options["smtp_auth"].partition(":")
            if not sep:
                raise CommandError("--smtp-auth must be USER:PASSWORD")
            return replace(instance, smtp_credentials=(user, password))
        return instance

    def _print_endpoints(self, server: SandboxServer) -> None:
        self.stdout.write(f"control API  {server.control_url}")
        for name, endpoint in server.endpoints().items():
            tls = endpoint.get("tls")
            note = f", STARTTLS {tls['mode']}" + (f", CA {tls['ca_file']}" if tls["ca_file"] else "") if tls else ""
            self.stdout.write(f"{name:<13} {endpoint['url']}  ({endpoint['kind']}{note})")
        self.stdout.flush()
