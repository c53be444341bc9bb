"""Floor, peer and Beacon side by side in one run (issue 25).

- the floor: `../shared/bench-floor/limitapp.py` (bench/floor.py), the least a durable checkout does;
- the peer: the usual DRF + `on_commit(delay)` + Celery pattern (bench/peer/);
- Beacon: the bench's own stack (bench/stack.py).

Every system runs with the same gunicorn shape, and the peer's workers have Beacon's shape. In
each repetition the systems take turns in a rotated order, so a host that slows down during the
run slows each of them; the medians of the repetitions and the ratios of each round are reported.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import floor as floor_app
from bench import load, scenarios
from bench.floor import FloorApp
from bench.inbox import sandbox_messages
from bench.peer.stack import PeerStack
from bench.stack import (
    BENCH_DATABASE,
    WEB_THREADS,
    WEB_WORKERS,
    WORKER_DISPATCH_THREADS,
    WORKER_NICE,
    WORKER_THREADS,
    BenchStack,
)
from sandbox.client import SandboxControl

SYSTEMS = ("floor", "peer", "beacon")
DELIVERING = ("peer", "beacon")  # the floor's outbox has no relay: it delivers nothing
# Closed-loop connections, as the floor's author measured (wrk-like, 8 connections).
CONNECTIONS = 8
# How often a drain polls, and for how long the peer's inbox must stand still to count as drained.
POLL_SECONDS = 0.5
PEER_QUIET_SECONDS = 2.0
# Seconds a sandbox control call (an inbox listing) may take: on a shared, overloaded box the
# sandbox runs at the workers' low priority and has taken over 5 s to list a few hundred messages.
CONTROL_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class CompareProfile:
    name: str
    reps: int
    # Seconds before a point records. Also what locust's own start-up must fit in: a fixed-rate
    # point's window counts from when locust was launched, and on a loaded box locust has taken
    # over a second to send its first request (a 1 s warm-up left a 3 s point nearly empty).
    warmup: float
    duration: float  # recorded seconds of a throughput or latency point
    rates: tuple[float, ...]  # checkouts/s of the fixed-rate latency points
    delivery_rate: float
    delivery_seconds: float
    fault_rate: float  # checkouts/s during a fault
    broker_down: tuple[float, float, float]  # seconds of load before, during and after the outage
    kills_at: tuple[float, ...]  # seconds into the load at which a worker is SIGKILLed
    kill_load_seconds: float
    kill_vendor_ms: float  # vendor latency that keeps sends in flight when a worker dies
    drain_timeout: float


COMPARE_FULL = CompareProfile("full", reps=3, warmup=3, duration=15, rates=(25, 50), delivery_rate=60,
                              delivery_seconds=60, fault_rate=5, broker_down=(5, 20, 10), kills_at=(6, 14),
                              kill_load_seconds=24, kill_vendor_ms=300, drain_timeout=240)
COMPARE_QUICK = CompareProfile("quick", reps=1, warmup=3, duration=4, rates=(15,), delivery_rate=15,
                               delivery_seconds=6, fault_rate=4, broker_down=(2, 6, 3), kills_at=(3,),
                               kill_load_seconds=8, kill_vendor_ms=300, drain_timeout=120)


@dataclass(frozen=True)
class Target:
    """Where a system takes load: its checkout (body and key) and its bare view."""

    name: str
    base_url: str
    checkout_path: str
    body: dict[str, Any]
    api_key: str
    bare_path: str
    access_log: Path


def rotated(names: tuple[str, ...], rep: int) -> tuple[str, ...]:
    """`names` starting at the rep-th: each system goes first, middle and last in turn."""
    k = rep % len(names)
    return names[k:] + names[:k]


class Systems:
    """Beacon's bench stack plus the floor and the peer, started beside it."""

    def __init__(self, stack: BenchStack, *, server_url: str, log_dir: Path) -> None:
        self.stack = stack
        self.floor = FloorApp(server_url=server_url, database=f"{BENCH_DATABASE}_floor", log_dir=log_dir,
                              workers=WEB_WORKERS, threads=WEB_THREADS)
        self.peer = PeerStack(server_url=server_url, database=f"{BENCH_DATABASE}_peer", log_dir=log_dir,
                              sandbox_port=stack.sandbox_port, web_workers=WEB_WORKERS, web_threads=WEB_THREADS,
                              # As many threads deliver as in Beacon's worker (Celery's and its listener's).
                              worker_threads=WORKER_THREADS + WORKER_DISPATCH_THREADS, worker_nice=WORKER_NICE)
        self.control = SandboxControl(f"http://127.0.0.1:{stack.sandbox_port}", timeout=CONTROL_TIMEOUT_SECONDS)

    def start(self, echo: Callable[[str], None]) -> None:
        echo("starting the floor (limitapp.py) and the peer (DRF + Celery)")
        self.floor.start()
        self.peer.start(worker_processes=len(self.stack.workers))
        echo(f"floor :{self.floor.port}, peer :{self.peer.port} ({len(self.peer.workers)} worker(s))")
        for name in ("floor", "peer"):
            self._warm(self.targets[name], echo)
        self.drain(echo, timeout=300)

    def _warm(self, target: Target, echo: Callable[[str], None]) -> None:
        """Checkouts through every gunicorn thread before anything is measured, as Beacon's web
        gets (harness Stack._web_warm): each thread's first request opens its database connection and
        imports what the view needs, which a cold web would put into the first measured point."""
        body = self.stack.log_dir / f"warm-{target.name}.json"
        body.write_text(json.dumps(target.body))
        command = [shutil.which("hey") or "hey", "-n", str(self.stack.options.warm_checkouts), "-c",
                   str(WEB_WORKERS * WEB_THREADS), "-m", "POST", "-T", "application/json", "-D", str(body),
                   target.base_url + target.checkout_path]
        if target.api_key:
            command[-1:-1] = ["-H", f"Authorization: Bearer {target.api_key}"]
        warm = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if warm.returncode:  # a cold first point is a worse measurement, not a reason to stop the run
            echo(f"  warning: warming the {target.name} failed: {warm.stderr.strip()[-300:]}")

    def stop(self) -> None:
        self.peer.stop()
        self.floor.stop()

    def describe(self) -> dict[str, str]:
        return {"floor": self.floor.describe(), "peer": self.peer.describe()}

    @property
    def targets(self) -> dict[str, Target]:
        stack = self.stack
        return {
            "floor": Target("floor", self.floor.base_url, floor_app.CHECKOUT_PATH, floor_app.CHECKOUT_BODY, "",
                            floor_app.BARE_PATH, self.floor.access_log),
            "peer": Target("peer", self.peer.base_url, load.CHECKOUT_PATH, load.CHECKOUT_BODY, self.peer.token,
                           load.FLOOR_PATH, self.peer.access_log),
            "beacon": Target("beacon", stack.base_url, load.CHECKOUT_PATH, load.CHECKOUT_BODY, stack.api_key,
                             load.FLOOR_PATH, stack.access_log),
        }

    @contextlib.contextmanager
    def workers_paused(self) -> Iterator[None]:
        """SIGSTOP every Celery worker of Beacon and the peer, SIGCONT on the way out: the web
        measured alone, as the floor's author measured it ("workers stopped")."""
        workers = [*self.stack.workers, *self.peer.workers]
        for worker in workers:
            worker.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for worker in workers:
                worker.signal(signal.SIGCONT)

    def drain(self, echo: Callable[[str], None], timeout: float) -> None:
        """Wait until Beacon and the peer have delivered their backlogs, so the next point does
        not share the CPU with them. A backlog still there after `timeout` is a warning, as the
        peer's is: the next point then shares the CPU with it, and the log says so."""
        deadline = time.monotonic() + timeout
        try:
            self.stack.deliveries_idle_wait(timeout=timeout)
        except TimeoutError:
            echo(f"  warning: Beacon had not drained after {timeout:g}s")
        control = self.control
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            held = sum(control.instance(name)["message_count"] for name in ("smtp-primary", "sms-primary"))
            if held != last:
                last, quiet_since = held, time.monotonic()
            elif self.peer.queue_depth() == 0 and time.monotonic() - quiet_since >= PEER_QUIET_SECONDS:
                return
            time.sleep(POLL_SECONDS)
        echo(f"  warning: the peer had not drained after {timeout:g}s (queue {self.peer.queue_depth()})")


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def max_throughput(systems: Systems, cp: CompareProfile, out_dir: Path, echo) -> dict[str, Any]:
    """Closed loop (CONNECTIONS) on each system's checkout and bare view, workers paused."""
    echo(f"== floor, peer, Beacon: maximum throughput, {CONNECTIONS} connections, workers paused, "
         f"{cp.reps} alternated round(s)")
    scenarios.sandbox_fresh(systems.stack, scenarios.VENDOR_LATENCY_FAST_MS)
    targets = systems.targets
    checkout: dict[str, list[load.LoadResult]] = {name: [] for name in SYSTEMS}
    bare: dict[str, list[load.LoadResult]] = {name: [] for name in SYSTEMS}
    with systems.workers_paused():
        for rep in range(cp.reps):
            for name in rotated(SYSTEMS, rep):
                t = targets[name]
                common = dict(base_url=t.base_url, concurrency=CONNECTIONS, warmup=cp.warmup, duration=cp.duration,
                              out_dir=out_dir, echo=echo, server_log=t.access_log)
                checkout[name].append(load.closed_loop(path=t.checkout_path, api_key=t.api_key, body=t.body,
                                                       label=f"c1-{name}-checkout-{rep}", **common))
                bare[name].append(load.closed_loop(path=t.bare_path, label=f"c1-{name}-bare-{rep}", **common))
    systems.drain(echo, cp.drain_timeout)
    # The same closed loop with the pipeline running (workers sending what the checkouts cause),
    # each round against the floor's round above; the delivering systems only.
    running: dict[str, list[load.LoadResult]] = {name: [] for name in DELIVERING}
    for rep in range(cp.reps):
        for name in rotated(DELIVERING, rep):
            t = targets[name]
            running[name].append(load.closed_loop(path=t.checkout_path, api_key=t.api_key, body=t.body,
                                                  base_url=t.base_url, concurrency=CONNECTIONS, warmup=cp.warmup,
                                                  duration=cp.duration, out_dir=out_dir, echo=echo,
                                                  server_log=t.access_log, label=f"c1-{name}-running-{rep}"))
            systems.drain(echo, cp.drain_timeout)
    rounds = {name: [_ratio(checkout[name][rep].achieved_rps, checkout["floor"][rep].achieved_rps)
                     for rep in range(cp.reps)] for name in SYSTEMS}
    rounds_running = {name: [_ratio(running[name][rep].achieved_rps, checkout["floor"][rep].achieved_rps)
                             for rep in range(cp.reps)] for name in DELIVERING}
    return {
        "connections": CONNECTIONS, "reps": cp.reps,
        "checkout": {name: scenarios.medians(runs) for name, runs in checkout.items()},
        "bare": {name: scenarios.medians(runs) for name, runs in bare.items()},
        "round_ratios": rounds,
        "ratio_of_floor": _median_ratios(rounds),
        "checkout_running": {name: scenarios.medians(runs) for name, runs in running.items()},
        "round_ratios_running": rounds_running,
        "ratio_of_floor_running": _median_ratios(rounds_running),
    }


def _median_ratios(rounds: dict[str, list[float | None]]) -> dict[str, float | None]:
    return {name: scenarios.median([r for r in ratios if r is not None]) or None for name, ratios in rounds.items()}


def latency_at_rates(systems: Systems, cp: CompareProfile, out_dir: Path, echo) -> dict[str, Any]:
    """Checkout p50/p99 at each fixed rate (locust, evenly spaced), workers running, vendors slow
    (300 ms): what a customer waits while the notification vendors are slow."""
    echo(f"== floor, peer, Beacon: checkout latency at {', '.join(f'{r:g}' for r in cp.rates)}/s, "
         f"vendors at {scenarios.VENDOR_LATENCY_SLOW_MS} ms")
    scenarios.sandbox_fresh(systems.stack, scenarios.VENDOR_LATENCY_SLOW_MS)
    targets = systems.targets
    points = []
    for rate in cp.rates:
        runs: dict[str, list[load.LoadResult]] = {name: [] for name in SYSTEMS}
        for rep in range(cp.reps):
            for name in rotated(SYSTEMS, rep):
                t = targets[name]
                runs[name].append(load.fixed_rate(base_url=t.base_url, path=t.checkout_path, rate=rate,
                                                  warmup=cp.warmup, duration=cp.duration,
                                                  label=f"c2-{name}-{rate:g}-{rep}", out_dir=out_dir, api_key=t.api_key,
                                                  body=t.body, echo=echo, server_log=t.access_log))
                systems.drain(echo, cp.drain_timeout)
        points.append({"rate": rate, "systems": {name: scenarios.medians(r) for name, r in runs.items()}})
    return {"points": points, "reps": cp.reps, "vendor_ms": scenarios.VENDOR_LATENCY_SLOW_MS}


def _accepted(out_dir: Path, label: str) -> int:
    """Checkouts answered 2xx in a fixed-rate run, its warm-up included (all were committed)."""
    samples = json.loads((out_dir / f"{label}.locust.json").read_text())["samples"]
    return sum(1 for sample in samples if 200 <= sample[2] < 300)


def delivery_point(systems: Systems, cp: CompareProfile, name: str, rep: int, out_dir: Path, echo) -> dict[str, Any]:
    """One system's checkouts at the delivery rate, vendors at 50 ms: notifications delivered per
    second while the load ran (counted in the sandbox inboxes) and the drain after it."""
    control = systems.control
    scenarios.sandbox_fresh(systems.stack, scenarios.VENDOR_LATENCY_FAST_MS)
    t = systems.targets[name]
    label = f"c3-{name}-{rep}"
    result = load.fixed_rate(base_url=t.base_url, path=t.checkout_path, rate=cp.delivery_rate, warmup=cp.warmup,
                             duration=cp.delivery_seconds, label=label, out_dir=out_dir, api_key=t.api_key,
                             body=t.body, echo=echo, server_log=t.access_log)
    load_end = time.time()
    expected = 2 * _accepted(out_dir, label)
    deadline = time.monotonic() + cp.drain_timeout
    messages = sandbox_messages(control)
    while len(messages) < expected and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        messages = sandbox_messages(control)
    systems.drain(echo, cp.drain_timeout)
    messages = sandbox_messages(control)
    received = [message["received_at"] for message in messages]
    window = result.window_end - result.window_start
    in_window = sum(1 for at in received if result.window_start <= at < result.window_end)
    echo(f"  {name}: {len(messages)}/{expected} notifications in the inboxes, "
         f"{in_window / window:.1f}/s during the load")
    return {
        "offered_rps": cp.delivery_rate, "achieved_rps": result.achieved_rps, "checkout_p50_ms": result.p50_ms,
        "checkout_p99_ms": result.p99_ms, "delivered_per_s": in_window / window if window > 0 else 0.0,
        "drain_after_load_s": max(0.0, max(received) - load_end) if received else None,
        "expected": expected, "delivered": len(messages), "missing": max(0, expected - len(messages)),
        "surplus": max(0, len(messages) - expected),
    }


def delivery(systems: Systems, cp: CompareProfile, out_dir: Path, echo) -> dict[str, Any]:
    echo(f"== peer vs Beacon: delivery at {cp.delivery_rate:g} checkouts/s for {cp.delivery_seconds:g}s, vendors at 50 ms")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DELIVERING}
    for rep in range(cp.reps):
        for name in rotated(DELIVERING, rep):
            runs[name].append(delivery_point(systems, cp, name, rep, out_dir, echo))
    out: dict[str, Any] = {}
    for name, points in runs.items():
        summary = {key: scenarios.median([p[key] for p in points if p[key] is not None]) or 0.0
                   for key in ("achieved_rps", "checkout_p50_ms", "checkout_p99_ms", "delivered_per_s",
                               "drain_after_load_s")}
        summary.update(offered_rps=cp.delivery_rate, missing=sum(p["missing"] for p in points),
                       surplus=sum(p["surplus"] for p in points), expected=sum(p["expected"] for p in points),
                       runs=points)
        out[name] = summary
    return {"systems": out, "rate": cp.delivery_rate, "seconds": cp.delivery_seconds, "reps": cp.reps}
