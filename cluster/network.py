"""Hosts as Linux network namespaces on one private bridge (`make cluster-test`).

Every "host" is a namespace `bcn-<name>` with one interface, `eth0`, holding its own address in
SUBNET. Its other end sits in the namespace `bcn-switch` on the bridge `br0`, so the machine's
own namespace never sees an address, a route or an interface of the cluster: nothing it does can
reach a real network, and deleting the namespaces removes every link with them.

Pulling a host's cable is `link_set(name, up=False)` on the switch side: the host keeps its
address and its sockets, and its packets go nowhere, as when a switch port dies.

Needs root (CAP_NET_ADMIN) and iproute2. Only this module creates or deletes `bcn-*` namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Namespaces of the cluster all start with this prefix; teardown deletes every one of them.
PREFIX = "bcn-"
SWITCH = f"{PREFIX}switch"
BRIDGE = "br0"
# A private /24 that exists only inside the namespaces (no route leads out of it).
SUBNET = "10.231.26"


@dataclass(frozen=True)
class Host:
    name: str
    address: str

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.name}"


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


def namespaces() -> list[str]:
    """The cluster's namespaces that exist now (those of a killed run included)."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(PREFIX)]


def namespace_pids(namespace: str) -> list[int]:
    result = _ip("netns", "pids", namespace, check=False)
    return [int(pid) for pid in result.stdout.split()]


def namespace_kill(namespace: str) -> int:
    """SIGKILL every process of `namespace`, as when its host loses power; returns how many."""
    pids = namespace_pids(namespace)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pids)


def network_destroy() -> None:
    """Kill every process in a `bcn-*` namespace and delete the namespaces (idempotent)."""
    for namespace in namespaces():
        namespace_kill(namespace)
        _ip("netns", "delete", namespace, check=False)


def network_create(hosts: list[Host]) -> None:
    """The switch with its bridge, and one namespace per host wired to it (after `network_destroy`)."""
    network_destroy()
    _ip("netns", "add", SWITCH)
    _ip("link", "set", "lo", "up", namespace=SWITCH)
    _ip("link", "add", BRIDGE, "type", "bridge", namespace=SWITCH)
    _ip("link", "set", BRIDGE, "up", namespace=SWITCH)
    for host in hosts:
        _ip("netns", "add", host.namespace)
        _ip("link", "set", "lo", "up", namespace=host.namespace)
        # Both ends are born inside their namespaces: the machine's own never holds them.
        _ip("link", "add", "eth0", "netns", host.namespace, "type", "veth", "peer", "name", host.name,
            "netns", SWITCH, namespace=SWITCH)
        _ip("link", "set", host.name, "master", BRIDGE, "up", namespace=SWITCH)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", namespace=host.namespace)
        _ip("link", "set", "eth0", "up", namespace=host.namespace)


def link_set(host: Host, *, up: bool) -> None:
    """Plug in or pull `host`'s cable at the switch."""
    _ip("link", "set", host.name, "up" if up else "down", namespace=SWITCH)


def in_namespace(host: Host, command: list[str]) -> list[str]:
    """`command` run on `host` (`ip netns exec` replaces itself with it: same pid, same group)."""
    return ["ip", "netns", "exec", host.namespace, *command]
