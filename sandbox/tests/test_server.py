from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.client import SandboxControl
from sandbox.server import InstanceConfig, SandboxServer, ServerConfig
from sandbox.tests.helpers import RECIPIENT, SENDER, post_message

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_layout_follows_the_base_port() -> None:
    config = ServerConfig.default(base_port=8100)

    assert config.control_port == 8100
    assert {i.name: (i.kind, i.port) for i in config.instances} == {
        "sms-primary": ("twilio", 8101),
        "sms-fallback": ("twilio", 8102),
        "smtp-primary": ("smtp", 8125),
        "smtp-fallback": ("smtp", 8126),
        "esp-primary": ("postmark", 8130),
        "esp-fallback": ("postmark", 8131),
    }
    assert {i.port for i in ServerConfig.default(base_port=0).instances} == {0}


def test_server_listens_on_explicit_ports_and_stop_closes_them() -> None:
    control_port, sms_port = free_port(), free_port()
    server = SandboxServer(
        ServerConfig(control_port=control_port, instances=(InstanceConfig("sms", "twilio", sms_port),))
    )
    server.start()
    try:
        assert SandboxControl(server.control_url).instance("sms")["port"] == sms_port
    finally:
        server.stop()
    for port in (control_port, sms_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    server.stop()  # idempotent


def test_start_fails_loudly_when_a_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = SandboxServer(ServerConfig(instances=(InstanceConfig("smtp", "smtp", port),)))

        with pytest.raises(OSError):
            server.start()


def test_management_command_serves_until_sigterm() -> None:
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sandbox_vendors", "--base-port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("control API"), first
        endpoints = [process.stdout.readline().split() for _ in range(6)]
        assert [e[0] for e in endpoints] == ["sms-primary", "sms-fallback", "smtp-primary", "smtp-fallback",
                                             "esp-primary", "esp-fallback"]
        assert SandboxControl(first.split()[-1]).healthy()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "stopped" in output


def test_management_command_serves_strict_vendors_as_asked() -> None:
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sandbox_vendors", "--base-port", "0", "--smtp-tls", "trusted",
         "--twilio-from", "+14155550999"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        control = SandboxControl(process.stdout.readline().split()[-1])
        lines = {line.split()[0]: line for line in (process.stdout.readline() for _ in range(4))}
        assert "STARTTLS trusted, CA " in lines["smtp-primary"]
        smtp = control.instance("smtp-primary")
        with smtplib.SMTP("127.0.0.1", smtp["port"], timeout=5) as client:
            client.starttls(context=ssl.create_default_context(cafile=smtp["tls"]["ca_file"]))
        sms = control.instance("sms-primary")
        owned = post_message(f"http://127.0.0.1:{sms['port']}", {"To": RECIPIENT, "From": "+14155550999", "Body": "x"})
        default = post_message(f"http://127.0.0.1:{sms['port']}", {"To": RECIPIENT, "From": SENDER, "Body": "x"})
        assert (owned[0], default[0], default[1]["code"]) == (201, 400, 21606)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0
