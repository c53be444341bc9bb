"""Start the sandbox vendors in-process on free ports, for tests and benchmarks.

with start_sandbox() as sandbox:
    sandbox.control.set_faults("sms-primary", latency_ms=50)
    port = sandbox.instances["smtp-primary"]["port"]
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sandbox.client import SandboxControl
from sandbox.server import InstanceConfig, SandboxServer, ServerConfig


class SandboxHandle:
    """A running in-process sandbox. Also a context manager that stops it on exit."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.control_url = server.control_url
        self.instances: dict[str, dict[str, Any]] = server.endpoints()
        self.control = SandboxControl(self.control_url)

    def url(self, name: str) -> str:
        return str(self.instances[name]["url"])

    def port(self, name: str) -> int:
        return int(self.instances[name]["port"])

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(*, host: str = "127.0.0.1", instances: tuple[InstanceConfig, ...] | None = None) -> SandboxHandle:
    """Start a SandboxServer on free ports in a background thread and return its handle.

    `instances` defaults to the standard layout (sms-primary, sms-fallback, smtp-primary,
    smtp-fallback), each on a port the OS picks, so it can run beside a dev stack.
    """
    config = ServerConfig.default(host=host, base_port=0)
    if instances is not None:
        config = ServerConfig(host=host, control_port=0, instances=instances)
    server = SandboxServer(config)
    server.start()
    return SandboxHandle(server)
