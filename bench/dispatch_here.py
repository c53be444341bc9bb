"""The listener's own dispatch threads against the broker hop, side by side in one stack.

    python -m bench.dispatch_here [--rates 60,90] [--threads 0,8] [--concurrency 8] [--rounds 2] [--seconds 60] [--burst 0]

Starts the benchmark's stack once (bench/stack.py: web, sandbox at 50 ms, Redis, PostgreSQL),
then, round after round, restarts the two threads-pool workers with each
TRIGGER_LISTENER_DISPATCH_THREADS in turn (0: every claim published to the broker, as before
notifications/trigger_dispatch_threads.py), and with each Celery pool size in `--concurrency`
(the layouts are every pair of the two lists), and offers each rate for `seconds` (locust, evenly
spaced, as scenario 5's ladder). With `--burst R` each turn ends with 60 s at R/s and its
drain. Per point: delivered/s, delivery p50/p99, the queue's maximum, the drain, lost; the
workers' CPU seconds over the point (warm-up and drain included) per measured checkout, the
same overcount for every turn. Writes results.json and a plot to bench/results/<stamp>-dispatch-here/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from datetime import datetime
from pathlib import Path

from bench import scenarios
from bench.cpu_budget import cpu_seconds, processes_by_type
from bench.run import echo
from bench.stack import WORKER_THREADS, BenchStack, stop_on_sigterm

RESULTS = Path(__file__).resolve().parent / "results"
PROCESSES = 2  # the Procfile's shape on this box: one threads worker per core


def _numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def workers_cpu_seconds(stack: BenchStack) -> float:
    return sum(cpu_seconds(proc) or 0.0 for proc in processes_by_type(stack)["workers (celery)"])


def point_measured(stack: BenchStack, profile: scenarios.Profile, *, rate: float, seconds: float, label: str,
                   out_dir: Path) -> dict:
    cpu_before = workers_cpu_seconds(stack)
    point = scenarios.pipeline_point(stack, profile, rate=rate, seconds=seconds, label=label, out_dir=out_dir, echo=echo)
    checkouts = point["checkout"].get("requests") or point["checkout"]["achieved_rps"] * seconds
    point["workers_cpu_ms_per_checkout"] = (workers_cpu_seconds(stack) - cpu_before) * 1000 / max(1, checkouts)
    point.pop("queue_samples", None)
    return point


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=_numbers, default=[60.0, 90.0])
    parser.add_argument("--threads", type=lambda text: [int(n) for n in _numbers(text)], default=[0, 8])
    parser.add_argument("--concurrency", type=lambda text: [int(n) for n in _numbers(text)], default=[WORKER_THREADS],
                        help="Celery threads per worker process (each layout: one of these with one of --threads)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=float, default=0.0, help="checkouts/s of a 60 s burst ending each turn (0: none)")
    args = parser.parse_args()
    profile = dataclasses.replace(scenarios.FULL, pipeline_seconds=args.seconds)
    out = RESULTS / f"{datetime.now():%Y%m%d-%H%M%S}-dispatch-here"
    (out / "logs").mkdir(parents=True)
    stop_on_sigterm()
    server_url = os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon")
    stack = BenchStack(server_url=server_url, log_dir=out / "logs", warm_checkouts=profile.warm_checkouts)
    points: list[dict] = []
    try:
        stack.start(progress=echo)
        for round_number in range(1, args.rounds + 1):
            layouts = [(concurrency, threads) for concurrency in args.concurrency for threads in args.threads]
            order = layouts if round_number % 2 else list(reversed(layouts))
            for concurrency, threads in order:
                stack.workers_start("threads", PROCESSES, concurrency=concurrency,
                                    TRIGGER_LISTENER_DISPATCH_THREADS=str(threads))
                for rate in [*args.rates, *([args.burst] if args.burst else [])]:
                    label = f"dh-r{round_number}-c{concurrency}-t{threads}-{rate:g}"
                    echo(f"== round {round_number}/{args.rounds}: {layout_name(concurrency, threads)}, {rate:g}/s")
                    point = point_measured(stack, profile, rate=rate, seconds=60.0 if rate == args.burst else args.seconds,
                                           label=label, out_dir=out / "logs")
                    point.update(round=round_number, concurrency=concurrency, threads=threads, burst=rate == args.burst)
                    points.append(point)
                    echo(f"   delivered {point['delivered_per_s']:.1f}/s, delivery p50/p99 {point['delivery_p50_ms']:.0f}/"
                         f"{point['delivery_p99_ms']:.0f} ms, queue max {point['max_queue_depth']}, drain "
                         f"{point['drain_after_load_s']} s, lost {point['lost']}, workers "
                         f"{point['workers_cpu_ms_per_checkout']:.2f} ms CPU/checkout")
    except KeyboardInterrupt:
        echo("interrupted")
    finally:
        stack.stop()
    (out / "results.json").write_text(json.dumps(points, indent=1, default=str))
    summary = summary_table(points)
    (out / "summary.md").write_text(summary)
    print(summary)
    plot(points, out / "dispatch_here.png")
    echo(f"done: {out}")
    return 0


def layout_name(concurrency: int, threads: int) -> str:
    return f"{concurrency} Celery threads + " + ("broker hop (0 dispatch threads)" if threads == 0 else f"{threads} dispatch threads")


def summary_table(points: list[dict]) -> str:
    lines = ["| workers (each process) | rate/s | rounds | delivered/s | delivery p50 ms | delivery p99 ms | queue max | drain s | lost | workers CPU ms/checkout |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(_layout(p), p["rate"]) for p in points}, key=lambda key: (key[1], key[0]))
    for layout, rate in keys:
        group = [p for p in points if (_layout(p), p["rate"]) == (layout, rate)]

        def each(key: str, digits: int = 0, group: list[dict] = group) -> str:
            values = [p[key] for p in group if p.get(key) is not None]
            if not values:
                return "-"
            return f"{statistics.median(values):.{digits}f} ({', '.join(f'{v:.{digits}f}' for v in values)})"
        lines.append(f"| {layout_name(*layout)} | {rate:g} | {len(group)} | {each('delivered_per_s', 1)} | {each('delivery_p50_ms')} | "
                     f"{each('delivery_p99_ms')} | {each('max_queue_depth')} | {each('drain_after_load_s', 1)} | "
                     f"{each('lost')} | {each('workers_cpu_ms_per_checkout', 2)} |")
    return "\n".join(["Medians of the rounds (each round's value in brackets).", "", *lines, ""])


def _layout(point: dict) -> tuple[int, int]:
    return point.get("concurrency", WORKER_THREADS), point["threads"]


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4))
    for layout in sorted({_layout(p) for p in points}):
        mine = sorted((p for p in points if _layout(p) == layout), key=lambda p: p["rate"])
        name = layout_name(*layout)
        latency.scatter([p["rate"] for p in mine], [p["delivery_p99_ms"] for p in mine], label=name)
        cpu.scatter([p["rate"] for p in mine], [p["workers_cpu_ms_per_checkout"] for p in mine], label=name)
    latency.axhline(1000, color="grey", linestyle="--", linewidth=1)
    latency.set(xlabel="checkouts/s offered", ylabel="delivery p99 (ms)", yscale="log", title="Delivery p99 (each round)")
    cpu.set(xlabel="checkouts/s offered", ylabel="ms", title="Workers' CPU per checkout (each round)")
    for axes in (latency, cpu):
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
