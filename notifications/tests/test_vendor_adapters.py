"""Vendor adapters against real servers: the sandbox (SMTP + Twilio-compatible HTTP) and small
`http.server` receivers started here. Nothing patches the network call."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from notifications.vendors import http
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError
from notifications.vendors.registry import VENDOR_ADAPTERS, adapter_choices, adapter_class, build_adapter
from notifications.vendors.smtp import smtp_sessions
from notifications.vendors.webhook import sign
from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-token"
SMTP_USER, SMTP_PASSWORD = "beacon", "smtp-pass-Zq81"
SIGNING_SECRET = "whsec-Xk2-do-not-leak"
TIMEOUT = 0.5
# Slack for thread scheduling and teardown on a busy CI machine.
TIMEOUT_SLACK = 0.5


def sms(to: str = "+447911123456", text: str = "Your order shipped", key: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel="sms",
        to=to,
        subject="",
        text=text,
        html="",
        idempotency_key=key or uuid.uuid4().hex,
        request_id="req-1",
    )


def email(to: str = "ana@example.com", key: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel="email",
        to=to,
        subject="Order shipped",
        text="Your order shipped.",
        html="<p>Your order shipped.</p>",
        idempotency_key=key or uuid.uuid4().hex,
        request_id="req-2",
    )


def send_expecting_error(adapter: VendorAdapter, message: OutboundMessage) -> tuple[VendorError, float]:
    started = time.monotonic()
    with pytest.raises(VendorError) as caught:
        adapter.send(message)
    return caught.value, time.monotonic() - started


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    instances = (
        InstanceConfig("sms-primary", "twilio"),
        InstanceConfig("smtp-primary", "smtp"),
        InstanceConfig("smtp-auth", "smtp", smtp_credentials=(SMTP_USER, SMTP_PASSWORD)),
    )
    with start_sandbox(instances=instances) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean_sandbox(request: pytest.FixtureRequest) -> None:
    smtp_sessions.close_all()
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").control.reset()


def twilio(url: str, *, timeout: float = TIMEOUT, auth_token: str = AUTH_TOKEN, **settings: Any) -> VendorAdapter:
    config = {"base_url": url, "account_sid": ACCOUNT_SID, "from_number": "+15005550006", **settings}
    return build_adapter("twilio", settings=config, secrets={"auth_token": auth_token}, timeout=timeout)


def smtp(port: int, *, timeout: float = TIMEOUT, secrets: dict[str, str] | None = None) -> VendorAdapter:
    config = {"host": "127.0.0.1", "port": port, "from_email": "Beacon <no-reply@example.com>"}
    return build_adapter("smtp", settings=config, secrets=secrets or {}, timeout=timeout)


# A real HTTP receiver for the wire-format and webhook tests.


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Receiver:
    """Answers every POST with `status`/`answer` after `delay` seconds and records the request."""

    status: int = 201
    answer: dict[str, Any] = field(default_factory=lambda: {"sid": "SMrecorded"})
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body, self.client_address[1]))
            time.sleep(state.delay)
            payload = json.dumps(state.answer).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Twilio


def test_twilio_send_returns_the_sid_and_the_message_is_in_the_inbox(sandbox: SandboxHandle) -> None:
    result = twilio(sandbox.url("sms-primary")).send(sms(text="Hello Ana"))

    assert result.message_id.startswith("SM")
    assert result.status_code == 201
    [stored] = sandbox.control.messages("sms-primary")
    assert (stored["sid"], stored["to"], stored["from"], stored["body"]) == (
        result.message_id,
        "+447911123456",
        "+15005550006",
        "Hello Ana",
    )


def test_twilio_request_matches_the_spec(receiver: Receiver) -> None:
    adapter = twilio(receiver.url, status_callback="https://beacon.example/hooks/twilio")

    result = adapter.send(sms(text="Hi & bye", key="notif-42"))

    assert result.message_id == "SMrecorded"
    [request] = receiver.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode(), strict_parsing=True) == {
        "To": ["+447911123456"],
        "From": ["+15005550006"],
        "Body": ["Hi & bye"],
        "StatusCallback": ["https://beacon.example/hooks/twilio"],
    }
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert request.headers["I-Twilio-Idempotency-Token"] == "notif-42"
    assert request.headers["X-Request-ID"] == "req-1"


@pytest.fixture
def environment_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set the proxy variables as an operator would (both spellings); the adapters read them once per host."""

    def set_proxy(proxy: str, no_proxy: str = "") -> None:
        for name, value in (("http_proxy", proxy), ("https_proxy", proxy), ("no_proxy", no_proxy)):
            monkeypatch.setenv(name, value)
            monkeypatch.setenv(name.upper(), value)
        http._environment_for.cache_clear()

    yield set_proxy
    monkeypatch.undo()
    http._environment_for.cache_clear()


def test_vendor_calls_go_through_the_proxy_the_environment_names(receiver: Receiver, environment_proxy) -> None:
    environment_proxy(receiver.url)

    twilio("http://api.twilio.invalid").send(sms())

    [request] = receiver.requests
    assert request.path.startswith(f"http://api.twilio.invalid/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")


def test_a_host_named_in_no_proxy_is_called_directly(receiver: Receiver, environment_proxy) -> None:
    environment_proxy(f"http://127.0.0.1:{closed_port()}", no_proxy="127.0.0.1")

    result = twilio(receiver.url).send(sms())

    assert result.message_id == "SMrecorded"
    assert receiver.requests[0].path.startswith("/2010-04-01/")


def test_twilio_sends_reuse_one_keep_alive_connection(receiver: Receiver) -> None:
    adapter = twilio(receiver.url)

    adapter.send(sms())
    twilio(receiver.url).send(sms())  # a new adapter instance shares the per-process session

    assert len({request.client_port for request in receiver.requests}) == 1


def send_to_one_shot_server(answer: bytes) -> VendorError:
    """Send an SMS to a server that reads the request, writes `answer` (raw bytes) and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def read_answer_close() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(answer)

    thread = threading.Thread(target=read_answer_close, daemon=True)
    thread.start()
    try:
        error, _ = send_expecting_error(twilio(f"http://127.0.0.1:{listener.getsockname()[1]}"), sms())
    finally:
        thread.join(timeout=5)
        listener.close()
    return error


def test_connection_dropped_after_the_request_was_sent_is_outcome_unknown() -> None:
    error = send_to_one_shot_server(b"")

    assert (error.permanent, error.outcome_unknown) == (False, True)


def test_an_answer_cut_short_is_outcome_unknown() -> None:
    error = send_to_one_shot_server(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" b'{"sid": "SM'
    )

    assert (error.permanent, error.outcome_unknown) == (False, True)


def test_a_proxy_that_refuses_the_connection_is_transient_and_nothing_reaches_the_vendor(
    receiver: Receiver, environment_proxy
) -> None:
    environment_proxy(f"http://127.0.0.1:{closed_port()}")

    error, _ = send_expecting_error(twilio(receiver.url), sms())

    assert (error.permanent, error.outcome_unknown) == (False, False)
    assert "proxy" in str(error)
    assert receiver.requests == []


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(receiver: Receiver) -> None:
    message = OutboundMessage(channel="sms", to="+447911123456", subject="", text="hi", html="",
                              idempotency_key="k-1", request_id="req-1\r\nX-Injected: yes")

    error, _ = send_expecting_error(twilio(receiver.url), message)

    assert (error.permanent, error.outcome_unknown) == (True, False)
    assert "invalid header value" in str(error)
    assert receiver.requests == []


@pytest.fixture
def tls_receiver(receiver: Receiver, tmp_path) -> Iterator[tuple[str, str]]:
    """An HTTPS front for `receiver` with a self-signed certificate for 127.0.0.1: (url, CA file)."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    upstream_port = int(receiver.url.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(tls: socket.socket) -> None:
        with tls, socket.create_connection(("127.0.0.1", upstream_port)) as upstream:
            def pump(source: socket.socket, target: socket.socket) -> None:
                try:
                    while chunk := source.recv(65536):
                        target.sendall(chunk)
                except OSError:
                    pass
            threading.Thread(target=pump, args=(upstream, tls), daemon=True).start()
            pump(tls, upstream)

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):  # the client refused our certificate
                raw.close()
                continue
            threading.Thread(target=relay, args=(tls,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", str(cert_file)
    listener.close()


def test_a_vendor_certificate_that_is_not_trusted_fails_the_tls_handshake_transiently(
    receiver: Receiver, tls_receiver: tuple[str, str]
) -> None:
    url, _ = tls_receiver

    error, _ = send_expecting_error(twilio(url), sms())

    assert (error.permanent, error.outcome_unknown) == (False, False)
    assert "TLS handshake failed" in str(error)
    assert receiver.requests == []


def test_requests_ca_bundle_makes_a_private_ca_trusted(
    receiver: Receiver, tls_receiver: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_file = tls_receiver
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    http._environment_for.cache_clear()
    try:
        result = twilio(url).send(sms())
    finally:
        monkeypatch.undo()
        http._environment_for.cache_clear()

    assert result.message_id == "SMrecorded"
    [request] = receiver.requests
    assert request.headers["I-Twilio-Idempotency-Token"]


def test_twilio_messaging_service_replaces_from(sandbox: SandboxHandle) -> None:
    adapter = twilio(sandbox.url("sms-primary"), messaging_service_sid="MG" + "a" * 32)

    adapter.send(sms())

    [stored] = sandbox.control.messages("sms-primary")
    assert stored["messaging_service_sid"] == "MG" + "a" * 32
    assert stored["from"] in (None, "")


def test_twilio_resend_with_the_same_key_is_stored_once(sandbox: SandboxHandle) -> None:
    adapter = twilio(sandbox.url("sms-primary"))

    first = adapter.send(sms(key="order-7-shipped-sms"))
    second = adapter.send(sms(key="order-7-shipped-sms"))

    assert first.message_id == second.message_id
    assert len(sandbox.control.messages("sms-primary")) == 1
    assert adapter.supports_idempotency()


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", "21211"),
        ("+15005550004", "21610"),
        ("+15005550009", "21614"),
    ],
)
def test_twilio_recipient_errors_are_permanent(sandbox: SandboxHandle, to: str, code: str) -> None:
    error, _ = send_expecting_error(twilio(sandbox.url("sms-primary")), sms(to=to))

    assert (error.permanent, error.outcome_unknown, error.vendor_code, error.status_code) == (True, False, code, 400)
    assert to not in str(error)
    assert sandbox.control.messages("sms-primary") == []


def test_twilio_region_not_enabled_is_the_accounts_configuration(sandbox: SandboxHandle) -> None:
    error, _ = send_expecting_error(twilio(sandbox.url("sms-primary")), sms(to="+15005550003"))

    # Geo permissions are set per account: another vendor may reach the number.
    assert (error.permanent, error.misconfigured, error.vendor_code) == (False, True, "21408")


def test_twilio_missing_body_is_permanent(sandbox: SandboxHandle) -> None:
    error, _ = send_expecting_error(twilio(sandbox.url("sms-primary")), sms(text=""))

    assert error.permanent
    assert error.vendor_code == "21602"


def test_twilio_rejected_credentials_are_a_vendor_fault_and_not_leaked(sandbox: SandboxHandle) -> None:
    wrong_token = "wrong-token-8f3a"
    adapter = twilio(sandbox.url("sms-primary"), auth_token=wrong_token)

    error, _ = send_expecting_error(adapter, sms())

    # Not the recipient's fault: another vendor may be configured right.
    assert (error.permanent, error.misconfigured, error.vendor_code, error.status_code) == (False, True, "20003", 401)
    assert "authentication failed" in str(error)
    assert wrong_token not in str(error) + repr(error) + repr(adapter)


@pytest.mark.parametrize(("status", "code"), [(429, "20429"), (500, "20500"), (503, "20503")])
def test_twilio_throttling_and_server_errors_are_transient(sandbox: SandboxHandle, status: int, code: str) -> None:
    sandbox.control.set_faults("sms-primary", failure_rate=1.0, error_status=status)

    error, _ = send_expecting_error(twilio(sandbox.url("sms-primary")), sms())

    assert (error.permanent, error.outcome_unknown, error.status_code, error.vendor_code) == (
        False,
        False,
        status,
        code,
    )


def test_twilio_connection_refused_is_transient() -> None:
    error, elapsed = send_expecting_error(twilio(f"http://127.0.0.1:{closed_port()}"), sms())

    assert (error.permanent, error.outcome_unknown) == (False, False)
    assert elapsed < TIMEOUT


def test_twilio_outage_is_transient(sandbox: SandboxHandle) -> None:
    adapter = twilio(sandbox.url("sms-primary"))
    adapter.send(sms())  # leaves a keep-alive connection in the pool
    sandbox.control.set_faults("sms-primary", outage=True)

    error, _ = send_expecting_error(adapter, sms())

    assert (error.permanent, error.outcome_unknown) == (False, False)


@pytest.mark.parametrize("fault", [{"hang": True}, {"latency_ms": 3000}])
def test_twilio_read_timeout_is_outcome_unknown_within_the_timeout(
    sandbox: SandboxHandle, fault: dict[str, Any]
) -> None:
    sandbox.control.set_faults("sms-primary", **fault)

    error, elapsed = send_expecting_error(twilio(sandbox.url("sms-primary")), sms())

    assert (error.permanent, error.outcome_unknown) == (False, True)
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + TIMEOUT_SLACK


def test_twilio_misconfiguration_fails_over_without_a_request(receiver: Receiver) -> None:
    adapter = build_adapter(
        "twilio", settings={"base_url": receiver.url, "account_sid": "nope"}, secrets={}, timeout=TIMEOUT
    )

    error, _ = send_expecting_error(adapter, sms())

    assert (error.permanent, error.misconfigured) == (False, True)
    assert "account_sid" in str(error) and "auth_token" in str(error) and "from_number" in str(error)
    assert receiver.requests == []


# SMTP


def test_smtp_send_returns_the_message_id_and_the_email_is_in_the_inbox(sandbox: SandboxHandle) -> None:
    result = smtp(sandbox.port("smtp-primary")).send(email(key="order-7-shipped-email"))

    assert result.message_id == "<order-7-shipped-email@example.com>"  # the sender's domain
    [stored] = sandbox.control.messages("smtp-primary")
    assert stored["to"] == ["ana@example.com"]
    assert stored["message_id"] == result.message_id
    assert (stored["subject"], stored["text"].strip(), stored["html"].strip()) == (
        "Order shipped",
        "Your order shipped.",
        "<p>Your order shipped.</p>",
    )
    # The request id is internal: it stays in the logs, not in the recipient's mailbox.
    assert "X-Request-ID" not in [name for name, _ in stored["headers"]]


def test_smtp_resend_with_the_same_key_is_stored_once(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))

    adapter.send(email(key="k-1"))
    adapter.send(email(key="k-1"))

    assert len(sandbox.control.messages("smtp-primary")) == 1


def test_smtp_key_that_cannot_be_a_message_id_is_hashed_stably(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))

    first = adapter.send(email(key="notification:7 retry"))
    second = adapter.send(email(key="notification:7 retry"))

    assert first.message_id == second.message_id
    assert first.message_id.endswith("@example.com>") and " " not in first.message_id
    assert len(sandbox.control.messages("smtp-primary")) == 1


def test_smtp_bounce_is_permanent_and_masks_the_address(sandbox: SandboxHandle) -> None:
    error, _ = send_expecting_error(smtp(sandbox.port("smtp-primary")), email(to="nobody@bounce.example"))

    assert (error.permanent, error.status_code) == (True, 550)
    assert "nobody@bounce.example" not in str(error)


def test_smtp_temporary_rejection_is_transient(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", failure_rate=1.0)

    error, _ = send_expecting_error(smtp(sandbox.port("smtp-primary")), email())

    assert (error.permanent, error.outcome_unknown, error.status_code) == (False, False, 451)


def test_smtp_permanent_rejection_of_data_is_permanent(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", failure_rate=1.0, error_status=554, smtp_permanent=True)

    error, _ = send_expecting_error(smtp(sandbox.port("smtp-primary")), email())

    assert (error.permanent, error.status_code) == (True, 554)


def test_smtp_outage_is_transient(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", outage=True)

    error, _ = send_expecting_error(smtp(sandbox.port("smtp-primary")), email())

    assert (error.permanent, error.outcome_unknown) == (False, False)


def test_smtp_server_that_never_greets_is_transient_within_the_timeout(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", hang=True)

    error, elapsed = send_expecting_error(smtp(sandbox.port("smtp-primary")), email())

    assert (error.permanent, error.outcome_unknown) == (False, False)
    assert elapsed < TIMEOUT + TIMEOUT_SLACK


def test_smtp_timeout_after_the_data_was_sent_is_outcome_unknown(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", latency_ms=3000)

    error, elapsed = send_expecting_error(smtp(sandbox.port("smtp-primary")), email())

    assert (error.permanent, error.outcome_unknown) == (False, True)
    assert elapsed < TIMEOUT + TIMEOUT_SLACK


def test_smtp_login_with_the_right_credentials_sends(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-auth"), secrets={"username": SMTP_USER, "password": SMTP_PASSWORD})

    adapter.send(email())

    assert len(sandbox.control.messages("smtp-auth")) == 1


def test_smtp_rejected_login_is_a_vendor_fault_and_not_leaked(sandbox: SandboxHandle) -> None:
    wrong_password = "wrong-pass-77c1"
    adapter = smtp(sandbox.port("smtp-auth"), secrets={"username": SMTP_USER, "password": wrong_password})

    error, _ = send_expecting_error(adapter, email())

    assert (error.permanent, error.misconfigured, error.status_code) == (False, True, 535)
    assert "authentication failed" in str(error) and "the server said 535" in str(error)
    assert wrong_password not in str(error) + repr(error) + repr(adapter)
    assert sandbox.control.messages("smtp-auth") == []


def smtp_connections(sandbox: SandboxHandle, name: str = "smtp-primary") -> int:
    return sandbox.control.instance(name)["counters"]["connections"]


def test_smtp_sends_reuse_one_session(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))

    for _ in range(3):
        adapter.send(email())

    assert len(sandbox.control.messages("smtp-primary")) == 3
    assert smtp_connections(sandbox) == 1


def test_smtp_session_is_shared_only_with_the_same_login(sandbox: SandboxHandle) -> None:
    right = smtp(sandbox.port("smtp-auth"), secrets={"username": SMTP_USER, "password": SMTP_PASSWORD})
    right.send(email())
    wrong = smtp(sandbox.port("smtp-auth"), secrets={"username": SMTP_USER, "password": "not-the-password"})

    error, _ = send_expecting_error(wrong, email())

    assert error.misconfigured and "authentication failed" in str(error)
    assert len(sandbox.control.messages("smtp-auth")) == 1


def test_smtp_session_closed_by_the_server_is_replaced_and_the_email_sent(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))
    adapter.send(email())
    # An outage resets every open connection; the pooled session is now dead.
    sandbox.control.set_faults("smtp-primary", outage=True)
    sandbox.control.clear_faults("smtp-primary")

    adapter.send(email(key="after-the-reset"))

    assert [m["message_id"] for m in sandbox.control.messages("smtp-primary")][-1] == "<after-the-reset@example.com>"
    assert smtp_connections(sandbox) == 2


def test_smtp_session_that_saw_an_error_is_not_reused(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))
    adapter.send(email())
    sandbox.control.set_faults("smtp-primary", failure_rate=1.0)
    send_expecting_error(adapter, email())
    sandbox.control.clear_faults("smtp-primary")

    adapter.send(email())

    assert smtp_connections(sandbox) == 2
    assert len(sandbox.control.messages("smtp-primary")) == 2


def test_smtp_pooled_session_gets_a_fresh_time_budget(sandbox: SandboxHandle) -> None:
    adapter = smtp(sandbox.port("smtp-primary"))
    adapter.send(email())
    time.sleep(TIMEOUT)  # longer than one send's budget
    sandbox.control.set_faults("smtp-primary", latency_ms=3000)

    error, elapsed = send_expecting_error(adapter, email())

    # The body went out on the pooled session (a spent budget would fail before MAIL FROM).
    assert (error.permanent, error.outcome_unknown) == (False, True)
    assert elapsed < TIMEOUT + TIMEOUT_SLACK
    assert smtp_connections(sandbox) == 1


def test_smtp_session_idle_past_the_limit_is_closed(sandbox: SandboxHandle, settings) -> None:
    settings.SMTP_SESSION_IDLE_SECONDS = 0.2
    adapter = smtp(sandbox.port("smtp-primary"))
    adapter.send(email())
    time.sleep(0.3)

    adapter.send(email())

    assert smtp_connections(sandbox) == 2


def test_smtp_session_ends_after_its_message_cap(sandbox: SandboxHandle, monkeypatch) -> None:
    monkeypatch.setattr("notifications.vendors.smtp.SESSION_MAX_MESSAGES", 2)
    adapter = smtp(sandbox.port("smtp-primary"))

    for _ in range(3):
        adapter.send(email())

    assert smtp_connections(sandbox) == 2
    assert len(sandbox.control.messages("smtp-primary")) == 3


def test_smtp_without_session_reuse_quits_after_each_email(sandbox: SandboxHandle, settings) -> None:
    settings.SMTP_SESSION_IDLE_SECONDS = 0
    adapter = smtp(sandbox.port("smtp-primary"))

    adapter.send(email())
    adapter.send(email())

    assert smtp_connections(sandbox) == 2
    assert smtp_sessions.take(adapter._session_key(), idle_seconds=60) is None


def test_smtp_refuses_an_sms_message() -> None:
    error, _ = send_expecting_error(smtp(closed_port()), sms())

    assert error.misconfigured  # a vendor row on the wrong channel: the next vendor may take it


# Webhook


def webhook(url: str, key: str = "webhook_email", timeout: float = TIMEOUT) -> VendorAdapter:
    return build_adapter(key, settings={"url": url}, secrets={"signing_secret": SIGNING_SECRET}, timeout=timeout)


def test_webhook_posts_a_signed_message(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 202, {"id": "wh-1"}

    result = webhook(receiver.url + "/deliver").send(email(key="order-7-email"))

    assert (result.message_id, result.status_code) == ("wh-1", 202)
    [request] = receiver.requests
    timestamp = request.headers["X-Beacon-Timestamp"]
    assert request.headers["X-Beacon-Signature"] == sign(SIGNING_SECRET, timestamp, request.body)
    assert abs(int(timestamp) - time.time()) < 60
    assert request.headers["Idempotency-Key"] == "order-7-email"
    assert request.headers["X-Request-ID"] == "req-2"
    assert json.loads(request.body) == {
        "channel": "email",
        "to": "ana@example.com",
        "subject": "Order shipped",
        "text": "Your order shipped.",
        "html": "<p>Your order shipped.</p>",
        "idempotency_key": "order-7-email",
    }
    assert SIGNING_SECRET.encode() not in request.body


def test_webhook_sms_adapter_sends_sms_and_defaults_the_id_to_the_key(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 200, {}

    result = webhook(receiver.url, key="webhook_sms").send(sms(key="order-7-sms"))

    assert result.message_id == "order-7-sms"
    assert json.loads(receiver.requests[0].body)["channel"] == "sms"


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False), (400, True), (404, True)])
def test_webhook_status_mapping(receiver: Receiver, status: int, permanent: bool) -> None:
    receiver.status = status

    error, _ = send_expecting_error(webhook(receiver.url), email())

    assert (error.permanent, error.outcome_unknown, error.status_code) == (permanent, False, status)
    assert SIGNING_SECRET not in str(error) + repr(error)


def test_webhook_slow_receiver_is_outcome_unknown_within_the_timeout(receiver: Receiver) -> None:
    receiver.delay = 2.0

    error, elapsed = send_expecting_error(webhook(receiver.url), email())

    assert error.outcome_unknown
    assert elapsed < TIMEOUT + TIMEOUT_SLACK


# Console, registry, interface


def test_console_logs_a_masked_recipient_and_returns_an_id(caplog: pytest.LogCaptureFixture) -> None:
    adapter = build_adapter("console_sms", settings={}, secrets={}, timeout=TIMEOUT)

    with caplog.at_level(logging.INFO, logger="notifications.vendors.console"):
        result = adapter.send(sms(to="+447911123456"))

    assert result.message_id.startswith("console-")
    assert "+447911123456" not in caplog.text
    assert "+44" in caplog.text


def test_every_registered_adapter_resolves_to_its_key() -> None:
    for key in VENDOR_ADAPTERS:
        cls = adapter_class(key)
        assert cls.key == key
        assert cls.channel in ("email", "sms")
        assert cls.label

    assert ("twilio", "Twilio") in adapter_choices("sms")
    assert all(adapter_class(key).channel == "email" for key, _ in adapter_choices("email"))
    with pytest.raises(KeyError):
        adapter_class("carrier-pigeon")


def test_a_vendor_error_cannot_be_permanent_and_unknown() -> None:
    with pytest.raises(ValueError):
        VendorError("x", permanent=True, outcome_unknown=True)
