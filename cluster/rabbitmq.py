"""A three-node RabbitMQ cluster, one node per host namespace.

Each node is `rabbit@<its address>` (long names, so no host name needs resolving), keeps its
data, logs, configuration and Erlang cookie under the run directory, and runs its own epmd
inside its namespace: the machine's RabbitMQ (and its epmd, ports and cookie) is never touched.
The nodes find each other through classic-config peer discovery at their first boot.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
from pathlib import Path

from cluster.network import Host, in_namespace
from cluster.services import AMQP_PORT, RABBITMQ_DIST_PORT
from harness.processes import ManagedProcess

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
USER, PASSWORD = "beacon", "beacon-cluster"


def node_name(host: Host) -> str:
    return f"rabbit@{host.address}"


def broker_url(hosts: list[Host]) -> str:
    """Celery's failover list: every node, tried in turn."""
    return ";".join(f"amqp://{USER}:{PASSWORD}@{host.address}:{AMQP_PORT}//" for host in hosts)


class RabbitCluster:
    def __init__(self, hosts: list[Host], run_dir: Path, log_dir: Path) -> None:
        self.hosts, self.run_dir, self.log_dir = hosts, run_dir, log_dir
        self.cookie = secrets.token_hex(20)
        self.nodes: dict[str, ManagedProcess] = {}
        self.epmds: dict[str, ManagedProcess] = {}

    def _node_dir(self, host: Host) -> Path:
        return self.run_dir / f"rabbitmq-{host.name}"

    def _env(self, host: Host) -> dict[str, str]:
        directory = self._node_dir(host)
        return {
            **os.environ,
            "HOME": str(directory),  # where the Erlang cookie is read from, by server and CLI alike
            "RABBITMQ_NODENAME": node_name(host),
            "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
            # Not the machine's /etc/rabbitmq/rabbitmq-env.conf, which pins epmd and the
            # distribution port to 127.0.0.1 for the machine's own node.
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_DEFAULT_USER": USER,
            "RABBITMQ_DEFAULT_PASS": PASSWORD,
        }

    def prepare(self) -> None:
        """Each node's directory, configuration and the cookie they share, owned by `rabbitmq`."""
        user = pwd.getpwnam("rabbitmq")
        peers = "\n".join(f"cluster_formation.classic_config.nodes.{i} = {node_name(h)}"
                          for i, h in enumerate(self.hosts, start=1))
        for host in self.hosts:
            directory = self._node_dir(host)
            (directory / "mnesia").mkdir(parents=True, exist_ok=True)
            (directory / "log").mkdir(exist_ok=True)
            (directory / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = {host.address}:{AMQP_PORT}\n"
                f"distribution.listener.port_range.min = {RABBITMQ_DIST_PORT}\n"
                f"distribution.listener.port_range.max = {RABBITMQ_DIST_PORT}\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}\n"
                "vm_memory_high_watermark.relative = 0.2\n"
            )
            (directory / "enabled_plugins").write_text("[].\n")
            (directory / "rabbitmq-env.conf").write_text("# this node's settings come from the environment\n")
            cookie = directory / ".erlang.cookie"
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def node(self, host: Host) -> ManagedProcess:
        command = ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", "--",
                   str(RABBITMQ_BIN / "rabbitmq-server")]
        return ManagedProcess(f"rabbitmq@{host.name}", in_namespace(host, command), env=self._env(host), log_dir=self.log_dir)

    def start(self, host: Host) -> ManagedProcess:
        """epmd (a process of the host, as on a real machine: it outlives a killed node), then the node."""
        epmd = self.epmds.get(host.name)
        if epmd is None or not epmd.alive():
            command = in_namespace(host, ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", "--", "epmd"])
            self.epmds[host.name] = ManagedProcess(f"epmd@{host.name}", command, env=dict(os.environ),
                                                   log_dir=self.log_dir).start()
        self.nodes[host.name] = self.node(host).start()
        return self.nodes[host.name]

    def ctl(self, host: Host, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against the node on `host`, from inside its namespace, as `rabbitmq`."""
        command = in_namespace(host, ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", "--",
                                      str(RABBITMQ_BIN / "rabbitmqctl"), "--longnames", "-n", node_name(host), *args])
        return subprocess.run(command, env=self._env(host), capture_output=True, text=True, timeout=timeout, check=False)

    def running_nodes(self, host: Host) -> list[str]:
        result = self.ctl(host, "cluster_status", "--formatter", "json", timeout=30)
        if result.returncode != 0:
            return []
        return json.loads(result.stdout).get("running_nodes", [])
