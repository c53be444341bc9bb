"""RabbitMQ as the broker: web, workers and beat move to the three-node cluster (quorum queues,
publisher confirms), then one node is SIGKILLed under load and started again 8 s later.

Clients connected to the killed node reconnect to the next node of the failover list; the
quorum queues keep a majority (two of three) and lose no acknowledged message.
"""

from __future__ import annotations

import json
import time

from chaos.scenarios.common import Chaos, ScenarioResult
from cluster.scenarios.hosts import _finish, _load, _slow_primaries
from cluster.stack import RABBITMQ_HOSTS, ClusterStack
from harness.processes import wait_until

QUEUES = ("default", "email", "sms")


def _queue_types(stack: ClusterStack) -> dict[str, str]:
    """Queue name -> type, as the first node sees them."""
    listed = stack.rabbit.ctl(stack.hosts[RABBITMQ_HOSTS[0]], "list_queues", "name", "type", "--formatter", "json")
    if listed.returncode != 0:
        return {}
    return {queue["name"]: queue["type"] for queue in json.loads(listed.stdout)}


def rabbitmq_node_killed(chaos: Chaos) -> ScenarioResult:
    stack: ClusterStack = chaos.stack
    result = ScenarioResult(7, "RabbitMQ node killed under load, back after 8 s")
    stack.rabbitmq_wait()
    stack.broker_switch(stack.rabbitmq_url)
    types = _queue_types(stack)
    result.check("Celery's queues are quorum queues on the cluster", all(types.get(q) == "quorum" for q in QUEUES),
                 ", ".join(f"{q}: {types.get(q, 'missing')}" for q in QUEUES))
    victim = stack.hosts[RABBITMQ_HOSTS[0]]  # first of the failover list: most clients are on it
    _slow_primaries(chaos, on=True)
    load = _load(chaos, "rabbit")
    try:
        time.sleep(6)
        stack.processes[victim.name].kill()
        print(f"    RabbitMQ node on {victim.name} killed at t={load.elapsed():.1f}s", flush=True)
        time.sleep(8)
        stack.processes[victim.name] = stack.rabbit.start(victim)
        print(f"    RabbitMQ node on {victim.name} started at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        _slow_primaries(chaos, on=False)
    _finish(chaos, result, load, results)
    try:
        wait_until(lambda: len(stack.rabbit.running_nodes(stack.hosts[RABBITMQ_HOSTS[1]])) == 3, timeout=60, interval=2,
                   what="the node to rejoin")
        rejoined = True
    except TimeoutError:
        rejoined = False
    result.check(f"the node on {victim.name} rejoined the cluster", rejoined)
    return result
