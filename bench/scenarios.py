"""The five scenarios of issue 6. Each returns a JSON-ready dict and ends by checking that no
notification was lost: every checkout's email and SMS is in a sandbox inbox (primary or
fallback), and every notification row of the scenario is `sent`.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from bench import load
from bench.stack import VENDOR_NAMES, WORKER_DISPATCH_THREADS, BenchStack


@dataclass(frozen=True)
class Profile:
    """How long and how often: `full` for make bench, `quick` for make bench-quick."""

    name: str
    reps: int
    warmup: float
    duration: float  # a fixed-rate or closed-loop point's recorded seconds
    closed_concurrency: int
    outage: tuple[float, float, float]  # seconds before, during and after the SMS primary outage
    pipeline_seconds: float
    pipeline_rate: float  # checkouts/s offered in scenario 4's worker comparison
    ladder: tuple[float, ...]  # checkouts/s tried for the sustained rate (scenario 5)
    target_rate: float  # checkouts/s to sustain (issue 25: 150/s, 13 million a day)
    burst_rate: float  # checkouts/s of scenario 5's 60 s burst (issue 25: twice the target)
    drain_timeout: float
    warm_checkouts: int = 120  # sent through a freshly started web before it is measured
    # Scenario 2's fixed-rate points last until they hold this many requests, so that their p99
    # rests on a few requests rather than on the single slowest one.
    tail_requests: int = 0


# The target is issue 25's 150 checkouts/s (13 million a day). The ladder is finest from 100/s,
# where this box has ended before: steps of 8-10/s there, so a run that holds 124/s does not
# report 116/s for want of a rung.
FULL = Profile("full", reps=3, warmup=4, duration=10, closed_concurrency=24, outage=(20, 30, 20),
               pipeline_seconds=60, pipeline_rate=60, ladder=(60, 90, 100, 108, 116, 124, 132, 140, 150, 160),
               target_rate=150, burst_rate=300,
               drain_timeout=300, tail_requests=300)
QUICK = Profile("quick", reps=1, warmup=2, duration=3, closed_concurrency=24, outage=(3, 6, 3),
                pipeline_seconds=6, pipeline_rate=20, ladder=(15,), target_rate=150, burst_rate=30, drain_timeout=90,
                warm_checkouts=48)

CASE_STUDY_DAILY = 10_000_000
VENDOR_LATENCY_FAST_MS = 50
VENDOR_LATENCY_SLOW_MS = 300


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def medians(results: list[load.LoadResult]) -> dict[str, Any]:
    """The median of each number over the repetitions, plus the repetitions themselves."""
    keys = ("achieved_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "requests", "server_p50_ms",
            "server_p99_ms")
    out: dict[str, Any] = {}
    for key in keys:
        values = [value for r in results if (value := getattr(r, key)) is not None]
        out[key] = median(values) if values else None
    out["offered_rps"] = results[0].offered_rps if results else None
    out["runs"] = [r.as_dict() for r in results]
    return out


def _web(stack: BenchStack) -> dict[str, Any]:
    """Where load goes, and the access log that times the same requests inside gunicorn."""
    return {"base_url": stack.base_url, "server_log": stack.access_log}


def vendors_latency(stack: BenchStack, latency_ms: float) -> None:
    for name in VENDOR_NAMES:
        stack.sandbox.set_faults(name, latency_ms=latency_ms)


def sandbox_fresh(stack: BenchStack, latency_ms: float) -> None:
    """Empty inboxes and counters, then the vendors' latency."""
    stack.sandbox.reset()
    vendors_latency(stack, latency_ms)


class QueueSampler:
    """Samples the broker's queue depth (default + email + sms) every `interval` seconds."""

    def __init__(self, stack: BenchStack, interval: float = 0.25) -> None:
        self.client = redis.Redis(port=stack.redis.port, socket_timeout=2)
        self.stack = stack
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.stack.queue_depth(self.client)))
            except redis.RedisError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def max_depth(self) -> int:
        return max((depth for _, depth in self.samples), default=0)


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def deliveries_settle(stack: BenchStack, *, since: float, timeout: float, echo) -> dict[str, Any]:
    """Wait (bounded) until every notification of the triggers created since `since` is sent,
    then compare with the sandbox inboxes. Returns counts, delivery latencies and `lost`."""
    from notifications.models import Notification, NotificationTrigger

    since_dt = datetime.fromtimestamp(since, tz=UTC)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        triggers = NotificationTrigger.objects.filter(created_at__gte=since_dt).count()
        undispatched = NotificationTrigger.objects.filter(created_at__gte=since_dt, dispatched_at__isnull=True).count()
        notifications = Notification.objects.filter(trigger__created_at__gte=since_dt)
        sent = notifications.filter(status="sent").count()
        done = undispatched == 0 and sent == 2 * triggers
        if done or time.monotonic() > deadline:
            break
        if time.monotonic() - last_report > 5:
            echo(f"  draining: {sent}/{2 * triggers} notifications sent, {undispatched} triggers undispatched")
            last_report = time.monotonic()
        time.sleep(0.5)
    rows = list(notifications.values_list("status", "sent_at", "trigger__created_at", "vendor__name", "channel"))
    latencies = [(sent_at - created).total_seconds() * 1000 for status, sent_at, created, _, _ in rows if sent_at]
    by_vendor: dict[str, int] = {}
    for _, _, _, vendor, _ in rows:
        if vendor:
            by_vendor[vendor] = by_vendor.get(vendor, 0) + 1
    inbox = {name: stack.sandbox.instance(name)["message_count"] for name in VENDOR_NAMES}
    email_inbox = inbox["smtp-primary"] + inbox["smtp-fallback"]
    sms_inbox = inbox["sms-primary"] + inbox["sms-fallback"]
    sent_times = [sent_at.timestamp() for _, sent_at, _, _, _ in rows if sent_at]
    lost = max(0, triggers - email_inbox) + max(0, triggers - sms_inbox)
    result = {
        "checkouts": triggers,
        "notifications_expected": 2 * triggers,
        "notifications_sent": sum(1 for row in rows if row[0] == "sent"),
        "not_sent": {status: sum(1 for row in rows if row[0] == status) for status in {r[0] for r in rows} if status != "sent"},
        "inbox": inbox,
        "inbox_email": email_inbox,
        "inbox_sms": sms_inbox,
        "lost": lost,
        "drained": done,
        "by_vendor": by_vendor,
        "delivery_p50_ms": load.percentile(latencies, 50),
        "delivery_p95_ms": load.percentile(latencies, 95),
        "delivery_p99_ms": load.percentile(latencies, 99),
        "delivery_max_ms": max(latencies, default=0.0),
        "last_sent_at": max(sent_times, default=None),
        "sent_times": sent_times,
    }
    status = "OK" if lost == 0 and done else "LOST/UNDRAINED"
    echo(f"  check: {triggers} checkouts, inbox email {email_inbox} sms {sms_inbox}, lost {lost} -> {status}")
    return result


def _drop_times(check: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in check.items() if k != "sent_times"}


# --- 1. floor ---------------------------------------------------------------------------------
def floor(stack: BenchStack, profile: Profile, out_dir, echo) -> dict[str, Any]:
    echo("== 1. floor: /healthz vs checkout on the same gunicorn (vendors at 50 ms)")
    sandbox_fresh(stack, VENDOR_LATENCY_FAST_MS)
    since = time.time()
    common = dict(**_web(stack), concurrency=profile.closed_concurrency, warmup=profile.warmup / 2,
                  duration=profile.duration, out_dir=out_dir, echo=echo)
    floor_max = [load.closed_loop(path=load.FLOOR_PATH, label=f"s1-floor-max-{i}", **common) for i in range(profile.reps)]
    checkout_max = []
    for i in range(profile.reps):
        checkout_max.append(load.closed_loop(path=load.CHECKOUT_PATH, label=f"s1-checkout-max-{i}", api_key=stack.api_key,
                                             body=load.CHECKOUT_BODY, **common))
        deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)  # start each rep drained
    half = max(1.0, round(median([r.achieved_rps for r in checkout_max]) / 2))
    fixed = dict(**_web(stack), rate=half, warmup=profile.warmup, duration=profile.duration, out_dir=out_dir,
                 echo=echo)
    checkout_half = [load.fixed_rate(path=load.CHECKOUT_PATH, label=f"s1-checkout-half-{i}", api_key=stack.api_key,
                                     body=load.CHECKOUT_BODY, **fixed) for i in range(profile.reps)]
    floor_half = [load.fixed_rate(path=load.FLOOR_PATH, label=f"s1-floor-half-{i}", **fixed) for i in range(profile.reps)]
    check = deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)
    fm, cm = medians(floor_max), medians(checkout_max)
    return {
        "floor_max": fm, "checkout_max": cm, "checkout_at_half_max": medians(checkout_half),
        "floor_at_half_max": medians(floor_half), "half_rate": half,
        "checkout_fraction_of_floor": cm["achieved_rps"] / fm["achieved_rps"] if fm["achieved_rps"] else 0.0,
        "delivery": _drop_times(check),
    }


# --- 2. synchronous vs asynchronous -----------------------------------------------------------
def sync_vs_async(stack: BenchStack, profile: Profile, out_dir, echo) -> dict[str, Any]:
    echo("== 2. synchronous vs asynchronous sending (vendors at 300 ms)")
    sandbox_fresh(stack, VENDOR_LATENCY_SLOW_MS)
    since = time.time()
    closed = dict(**_web(stack), path=load.CHECKOUT_PATH, api_key=stack.api_key, body=load.CHECKOUT_BODY,
                  concurrency=profile.closed_concurrency, warmup=profile.warmup / 2, duration=profile.duration,
                  out_dir=out_dir, echo=echo)
    results: dict[str, Any] = {}
    stack.web_restart(sync=True)
    try:
        sync_max = [load.closed_loop(label=f"s2-sync-max-{i}", **closed) for i in range(profile.reps)]
        rate = max(1.0, round(median([r.achieved_rps for r in sync_max]) / 2))
        fixed = dict(**_web(stack), path=load.CHECKOUT_PATH, api_key=stack.api_key, body=load.CHECKOUT_BODY,
                     rate=rate, warmup=profile.warmup, duration=max(profile.duration, profile.tail_requests / rate),
                     out_dir=out_dir, echo=echo)
        sync_fixed = [load.fixed_rate(label=f"s2-sync-fixed-{i}", **fixed) for i in range(profile.reps)]
    finally:
        stack.web_restart(sync=False)
    async_fixed = [load.fixed_rate(label=f"s2-async-fixed-{i}", **fixed) for i in range(profile.reps)]
    async_max = []
    for i in range(profile.reps):
        async_max.append(load.closed_loop(label=f"s2-async-max-{i}", **closed))
        # The backlog drains at 50 ms: the 300 ms only matters while the web is measured.
        vendors_latency(stack, VENDOR_LATENCY_FAST_MS)
        deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)
        vendors_latency(stack, VENDOR_LATENCY_SLOW_MS)
    check = deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)
    sm, sf, am, af = medians(sync_max), medians(sync_fixed), medians(async_max), medians(async_fixed)
    results.update(
        sync_max=sm, sync_fixed=sf, async_max=am, async_fixed=af, rate=rate,
        p50_reduction_pct=100 * (1 - af["p50_ms"] / sf["p50_ms"]) if sf["p50_ms"] else 0.0,
        p99_reduction_pct=100 * (1 - af["p99_ms"] / sf["p99_ms"]) if sf["p99_ms"] else 0.0,
        max_throughput_ratio=am["achieved_rps"] / sm["achieved_rps"] if sm["achieved_rps"] else 0.0,
        delivery=_drop_times(check),
    )
    return results


# --- 3. vendor outage -------------------------------------------------------------------------
def outage(stack: BenchStack, profile: Profile, rate: float, out_dir, echo) -> dict[str, Any]:
    from notifications.models import DeliveryAttempt

    before, during, after = profile.outage
    echo(f"== 3. SMS primary outage for {during:g}s at {rate:g} checkouts/s (vendors at 50 ms)")
    sandbox_fresh(stack, VENDOR_LATENCY_FAST_MS)
    since = time.time()
    marks: dict[str, float] = {}

    def inject() -> None:
        time.sleep(profile.warmup + before)
        marks["outage_start"] = time.time()
        stack.sandbox.set_faults("sms-primary", outage=True)
        echo("  sms-primary: outage begins")
        time.sleep(during)
        stack.sandbox.set_faults("sms-primary", outage=False)
        marks["outage_end"] = time.time()
        echo("  sms-primary: back")

    injector = threading.Thread(target=inject, daemon=True)
    injector.start()
    result = load.fixed_rate(**_web(stack), path=load.CHECKOUT_PATH, api_key=stack.api_key,
                             body=load.CHECKOUT_BODY, rate=rate, warmup=profile.warmup, duration=before + during + after,
                             label="s3-outage", out_dir=out_dir, echo=echo)
    injector.join(timeout=during + 30)
    raw = __import__("json").loads((out_dir / "s3-outage.locust.json").read_text())["samples"]
    phases = {
        "before": (marks["outage_start"] - before, marks["outage_start"]),
        "during": (marks["outage_start"], marks["outage_end"]),
        "after": (marks["outage_end"], marks["outage_end"] + after),
    }
    by_phase = {}
    for phase, (start, end) in phases.items():
        lat = [s[1] for s in raw if start <= s[0] < end]
        by_phase[phase] = {"requests": len(lat), "p50_ms": load.percentile(lat, 50), "p95_ms": load.percentile(lat, 95),
                           "p99_ms": load.percentile(lat, 99)}
    check = deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)
    start_dt = datetime.fromtimestamp(marks["outage_start"], tz=UTC)
    first_open = (DeliveryAttempt.objects.filter(vendor__name="sms-primary", outcome="skipped_circuit_open",
                                                 started_at__gte=start_dt).order_by("started_at").first())
    failed_primary = DeliveryAttempt.objects.filter(vendor__name="sms-primary", started_at__gte=start_dt).exclude(
        outcome="sent").count()
    return {
        "rate": rate, "checkout": result.as_dict(), "phases": by_phase, "marks": marks,
        "failed_over_sms": check["by_vendor"].get("sms-fallback", 0),
        "primary_failed_or_skipped_attempts": failed_primary,
        "circuit_open_after_s": (first_open.started_at.timestamp() - marks["outage_start"]) if first_open else None,
        "latencies_raw": [(s[0], s[1]) for s in raw],
        "delivery": _drop_times(check),
    }


# --- 4. pipeline ------------------------------------------------------------------------------
def workers_described(stack: BenchStack) -> str:
    """The workers running, e.g. "threads x2 (8 Celery threads and 8 dispatch threads each)"."""
    pool, processes, threads = stack.worker_spec
    if pool != "threads":
        return f"{pool} x{processes} (1 slot each; the listener publishes every claim)"
    dispatch = stack.worker_env.get("TRIGGER_LISTENER_DISPATCH_THREADS", WORKER_DISPATCH_THREADS)
    return f"{pool} x{processes} ({threads} Celery threads and {dispatch} dispatch threads each)"


def pipeline_point(stack: BenchStack, profile: Profile, *, rate: float, seconds: float, label: str, out_dir,
                   echo) -> dict[str, Any]:
    """Checkouts at `rate` for `seconds` (vendors at 50 ms): delivered/s, delivery latency, queue."""
    sandbox_fresh(stack, VENDOR_LATENCY_FAST_MS)
    since = time.time()
    with QueueSampler(stack) as sampler:
        result = load.fixed_rate(**_web(stack), path=load.CHECKOUT_PATH, api_key=stack.api_key,
                                 body=load.CHECKOUT_BODY, rate=rate, warmup=profile.warmup, duration=seconds,
                                 label=label, out_dir=out_dir, echo=echo)
        load_end = time.time()
        check = deliveries_settle(stack, since=since, timeout=profile.drain_timeout, echo=echo)
    in_window = [t for t in check["sent_times"] if result.window_start <= t < result.window_end]
    drain = (check["last_sent_at"] - load_end) if check["last_sent_at"] else None
    return {
        "workers": workers_described(stack), "rate": rate, "seconds": seconds,
        "checkout": result.as_dict(),
        "delivered_per_s": len(in_window) / (result.window_end - result.window_start),
        "max_queue_depth": sampler.max_depth, "drain_after_load_s": max(0.0, drain) if drain is not None else None,
        "queue_samples": sampler.samples, **_drop_times(check),
    }


def pipeline(stack: BenchStack, profile: Profile, out_dir, echo) -> dict[str, Any]:
    echo(f"== 4. pipeline: {profile.pipeline_rate:g} checkouts/s for {profile.pipeline_seconds:g}s, vendors at 50 ms")
    configs = [("threads", 1), ("threads", 2), ("threads", 4), ("prefork", 4), ("prefork", 16)]
    if profile.name == "quick":
        configs = [("threads", 2)]
    points = []
    for pool, processes in configs:
        stack.workers_start(pool, processes)
        echo(f"  workers: {pool} x{processes}")
        reps = [pipeline_point(stack, profile, rate=profile.pipeline_rate, seconds=profile.pipeline_seconds,
                               label=f"s4-{pool}-{processes}-{i}", out_dir=out_dir, echo=echo)
                for i in range(1 if profile.name == "quick" else max(1, profile.reps - 2))]
        points.append(_median_point(reps, pool, processes))
    return {"points": points}


# Scenario 4 runs above what the box sustains, where delivered/s spreads by 10-15% from run to
# run: another configuration replaces the default for scenario 5 only if it delivered this much more.
CLEARLY_BETTER = 1.10


def workers_for_daily_volume(points: list[dict[str, Any]], *, default: tuple[str, int]) -> tuple[str, int]:
    """The worker configuration scenario 5 uses: the default (the Procfile's, one threaded
    process per core), unless another lost nothing and delivered clearly more in scenario 4.

    Picking the plain maximum let noise choose: one run picked a single process at 57.8 vs 50.4
    deliveries/s, which then sustained 20 checkouts/s where two processes sustain 35-40.
    """
    clean = [p for p in points if p["lost_total"] == 0 and p["delivered_per_s"] is not None]
    baseline = next((p for p in clean if (p["pool"], p["processes"]) == default), None)
    if not clean:
        return default
    top = max(clean, key=lambda p: (p["delivered_per_s"], -(p["delivery_p99_ms"] or 0)))
    if baseline is None or top["delivered_per_s"] >= CLEARLY_BETTER * baseline["delivered_per_s"]:
        return top["pool"], top["processes"]
    return default


def _median_point(reps: list[dict[str, Any]], pool: str, processes: int) -> dict[str, Any]:
    keys = ("delivered_per_s", "delivery_p50_ms", "delivery_p99_ms", "max_queue_depth", "drain_after_load_s", "lost")
    point: dict[str, Any] = {"pool": pool, "processes": processes}
    for key in keys:
        values = [r[key] for r in reps if r[key] is not None]
        point[key] = median(values) if values else None
    point["checkout_p50_ms"] = median([r["checkout"]["p50_ms"] for r in reps])
    point["checkout_p99_ms"] = median([r["checkout"]["p99_ms"] for r in reps])
    point["achieved_rps"] = median([r["checkout"]["achieved_rps"] for r in reps])
    point["lost_total"] = sum(r["lost"] for r in reps)
    point["runs"] = reps
    return point


# --- 5. daily volume --------------------------------------------------------------------------
def daily_volume(stack: BenchStack, profile: Profile, pool: str, processes: int, out_dir, echo) -> dict[str, Any]:
    """The highest offered rate whose every notification is delivered while the load runs
    (queue flat, delivery p99 < 1 s), then a burst at twice that rate and its drain time."""
    echo(f"== 5. daily volume: sustained checkouts/s with {pool} x{processes}")
    stack.workers_start(pool, processes)
    ladder = []
    sustained = 0.0
    for rate in profile.ladder:
        point = pipeline_point(stack, profile, rate=rate, seconds=profile.pipeline_seconds, label=f"s5-ladder-{rate:g}",
                               out_dir=out_dir, echo=echo)
        ok = (point["checkout"]["achieved_rps"] >= 0.95 * rate and point["delivery_p99_ms"] < 1000
              and point["lost"] == 0 and point["drained"])
        point["sustained"] = ok
        ladder.append({k: v for k, v in point.items() if k != "queue_samples"} | {"queue_samples": point["queue_samples"]})
        echo(f"  {rate:g}/s: delivered {point['delivered_per_s']:.1f}/s, delivery p99 {point['delivery_p99_ms']:.0f} ms, "
             f"queue max {point['max_queue_depth']} -> {'sustained' if ok else 'not sustained'}")
        if ok:
            sustained = rate
        else:
            break
    # The target's burst, whatever rate was sustained.
    burst_rate = profile.burst_rate
    burst = pipeline_point(stack, profile, rate=burst_rate, seconds=profile.pipeline_seconds, label="s5-burst",
                           out_dir=out_dir, echo=echo)
    return {
        "ladder": ladder, "sustained_rps": sustained, "per_day": sustained * 86400,
        "fraction_of_case_study": sustained * 86400 / CASE_STUDY_DAILY, "target_rps": profile.target_rate,
        "burst": burst, "burst_rate": burst_rate,
        "burst_drained_within_60s": burst["drain_after_load_s"] is not None and burst["drain_after_load_s"] <= 60
        and burst["lost"] == 0,
    }
