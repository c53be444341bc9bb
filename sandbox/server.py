"""SandboxServer: every fake vendor plus the control API, on one asyncio event loop.

Use `start()`/`stop()` to run it in a background daemon thread (tests, benchmark), or
`serve_forever()` in the foreground (the `sandbox_vendors` management command).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from sandbox.control_api import build_control_app
from sandbox.postmark_api import DEFAULT_SERVER_TOKEN, build_postmark_app
from sandbox.smtp import SmtpListener
from sandbox.state import INSTANCE_KINDS, InstanceKind, InstanceState, Listener, sockets_closed
from sandbox.tls import TLS_MODES, TlsMode, certificate_generate
from sandbox.twilio_api import DEFAULT_AUTH_TOKEN, TwilioAccount, build_twilio_app

logger = logging.getLogger(__name__)

# Port offsets from --base-port of the default layout (25/26 echo SMTP's port 25).
DEFAULT_LAYOUT: tuple[tuple[str, InstanceKind, int], ...] = (
    ("sms-primary", "twilio", 1),
    ("sms-fallback", "twilio", 2),
    ("smtp-primary", "smtp", 25),
    ("smtp-fallback", "smtp", 26),
    ("esp-primary", "postmark", 30),
    ("esp-fallback", "postmark", 31),
)
DEFAULT_BASE_PORT = 8100
# How long shutdown waits for in-flight requests (e.g. ones sleeping on injected latency).
SHUTDOWN_GRACE_SECONDS = 0.5
START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class InstanceConfig:
    """One fake vendor. `port=0` lets the OS pick a free port."""

    name: str
    kind: InstanceKind
    port: int = 0
    # Twilio: the basic-auth password to require; None accepts any password. Postmark: the
    # server token (None: DEFAULT_SERVER_TOKEN).
    auth_token: str | None = DEFAULT_AUTH_TOKEN
    # Twilio: the senders and messaging services the account owns (others are refused).
    twilio_account: TwilioAccount = field(default_factory=TwilioAccount)
    # SMTP: require AUTH with these credentials; None = no AUTH.
    smtp_credentials: tuple[str, str] | None = None
    # Stand for a vendor that dedupes by idempotency key (see InstanceState.dedupe); off, as
    # with Twilio's Messages API and SMTP relays.
    dedupe: bool = False
    # SMTP: STARTTLS on a generated certificate a CA file vouches for ("trusted"), on a
    # self-signed one ("untrusted"), or no TLS ("off"). See sandbox/tls.py.
    smtp_tls: TlsMode = "off"

    def __post_init__(self) -> None:
        if self.kind not in INSTANCE_KINDS:
            raise ValueError(f"instance {self.name!r}: kind must be one of {INSTANCE_KINDS}")
        if self.smtp_tls not in TLS_MODES:
            raise ValueError(f"instance {self.name!r}: smtp_tls must be one of {TLS_MODES}")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    control_port: int = 0
    instances: tuple[InstanceConfig, ...] = field(default_factory=tuple)

    @classmethod
    def default(cls, *, host: str = "127.0.0.1", base_port: int = DEFAULT_BASE_PORT) -> ServerConfig:
        """The default layout; `base_port=0` gives every socket a free port instead."""

        def port(offset: int) -> int:
            return base_port + offset if base_port else 0

        instances = tuple(InstanceConfig(name, kind, port(offset)) for name, kind, offset in DEFAULT_LAYOUT)
        return cls(host=host, control_port=port(0), instances=instances)


class AiohttpListener:
    """Opens/closes the listening socket of an aiohttp application (see sandbox.state.Listener)."""

    def __init__(self, app: web.Application, host: str) -> None:
        self.host = host
        # No access log: it costs a measurable share of the loop at several hundred req/s.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        self._server: asyncio.Server | None = None

    async def open(self, port: int) -> int:
        if self.runner.server is None:
            await self.runner.setup()
        assert self.runner.server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.runner.server, self.host, port, reuse_address=True, backlog=512)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        # Keep-alive connections die too, as they would with a crashed vendor.
        for connection in self.runner.server.connections if self.runner.server else ():
            if connection.transport is not None:
                connection.transport.abort()
        await sockets_closed()

    async def cleanup(self) -> None:
        await self.close()
        await self.runner.cleanup()


def make_listener(instance: InstanceState, config: InstanceConfig) -> Listener:
    if config.kind == "twilio":
        app = build_twilio_app(instance, auth_token=config.auth_token, account=config.twilio_account)
        return AiohttpListener(app, instance.host)
    if config.kind == "postmark":
        token = config.auth_token if config.auth_token not in (None, DEFAULT_AUTH_TOKEN) else DEFAULT_SERVER_TOKEN
        return AiohttpListener(build_postmark_app(instance, server_token=token), instance.host)
    certificate = None
    if config.smtp_tls != "off":
        certificate = certificate_generate(config.smtp_tls)
        instance.tls = {"mode": config.smtp_tls, "ca_file": str(certificate.ca_file) if certificate.ca_file else None}
    return SmtpListener(instance, credentials=config.smtp_credentials, certificate=certificate)


class SandboxServer:
    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig.default()
        self.host = self.config.host
        self.control_port = self.config.control_port
        self.instances: dict[str, InstanceState] = {}
        self._control: AiohttpListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def endpoints(self) -> dict[str, dict[str, object]]:
        """name -> {kind, host, port, url, tls}; ports are the bound ones once started; `tls` is
        None or {mode, ca_file} (the CA file a client must trust, None when untrusted)."""
        return {
            i.name: {"kind": i.kind, "host": i.host, "port": i.port, "url": i.url, "tls": i.tls}
            for i in self.instances.values()
        }

    # -- on the loop --------------------------------------------------------------------------

    async def _open(self) -> None:
        """Bind every socket; on failure close what was opened and re-raise."""
        try:
            for config in self.config.instances:
                instance = InstanceState(
                    name=config.name, kind=config.kind, host=self.host, port=config.port, dedupe=config.dedupe
                )
                instance.listener = make_listener(instance, config)
                self.instances[config.name] = instance
                instance.port = await instance.listener.open(config.port)
            self._control = AiohttpListener(build_control_app(self.instances), self.host)
            self.control_port = await self._control.open(self.config.control_port)
        except BaseException:
            await self._close()
            raise
        logger.info("sandbox vendors listening; control API on %s", self.control_url)

    async def _close(self) -> None:
        for instance in self.instances.values():
            instance.release_hangs()
        for instance in self.instances.values():
            listener = instance.listener
            if isinstance(listener, AiohttpListener):
                await listener.cleanup()
            elif listener is not None:
                await listener.close()
            if isinstance(listener, SmtpListener) and listener.certificate is not None:
                listener.certificate.remove()
        if self._control is not None:
            await self._control.cleanup()

    # -- background thread --------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Run on a daemon thread; return once every socket listens. Raises OSError if a port is taken."""
        if self._thread is not None:
            raise RuntimeError("sandbox already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            _cancel_remaining_tasks(loop)
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="sandbox-vendors", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("sandbox did not start listening in time")
        if failure:
            self._thread = None
            raise failure[0]

    def stop(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Close every socket and stop the thread started by `start()`. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # -- foreground ---------------------------------------------------------------------------

    def serve_forever(self, on_ready: Callable[[SandboxServer], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT or SIGTERM."""
        asyncio.run(self._serve(on_ready))

    async def _serve(self, on_ready: Callable[[SandboxServer], None] | None) -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopped.set)
        await self._open()
        try:
            if on_ready is not None:
                on_ready(self)
            await stopped.wait()
        finally:
            await self._close()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel handlers still running at shutdown (e.g. hung requests) so the loop closes cleanly."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
