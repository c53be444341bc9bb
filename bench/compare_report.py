"""The summary's tables of floor, peer and Beacon: one table per scenario, one row per system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.compare import DELIVERING, SYSTEMS

LABELS = {"floor": "floor (limitapp.py)", "peer": "peer (DRF + Celery defaults)", "beacon": "Beacon"}
NOT_DELIVERING = "— (delivers nothing: its outbox has no relay)"


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _throughput(s: dict[str, Any]) -> list[str]:
    lines = ["", f"### Maximum throughput (closed loop, {s['connections']} connections, workers paused; "
             f"medians of {s['reps']} alternated round(s))", "",
             "| system | checkouts/s | × floor (median of rounds) | each round | p50 ms | p99 ms | server p50 ms | "
             "errors | bare view req/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in SYSTEMS:
        c, b = s["checkout"][name], s["bare"][name]
        rounds = ", ".join(_ratio(r) for r in s["round_ratios"][name])
        lines.append(f"| {LABELS[name]} | {c['achieved_rps']:.0f} | {_ratio(s['ratio_of_floor'][name])} | {rounds} | "
                     f"{c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {_num(c.get('server_p50_ms'))} | {c['errors']:g} | "
                     f"{b['achieved_rps']:.0f} |")
    if running := s.get("checkout_running"):
        lines += ["", "The same closed loop with the pipeline running (workers delivering what the checkouts cause), "
                  "each round against the floor's round above:", "",
                  "| system | checkouts/s | × floor (median of rounds) | each round | p50 ms | p99 ms | errors |",
                  "|---|---|---|---|---|---|---|"]
        for name in DELIVERING:
            c = running[name]
            rounds = ", ".join(_ratio(r) for r in s["round_ratios_running"][name])
            lines.append(f"| {LABELS[name]} | {c['achieved_rps']:.0f} | {_ratio(s['ratio_of_floor_running'][name])} | "
                         f"{rounds} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {c['errors']:g} |")
    return lines


def _latency(s: dict[str, Any]) -> list[str]:
    vendor_ms = s.get("vendor_ms", 50)
    lines = ["", f"### Checkout latency at fixed rates (workers running, vendors at {vendor_ms} ms; medians of "
             f"{s['reps']})", "",
             "| system | offered/s | achieved/s | p50 ms | p99 ms | server p50 ms | server p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for point in s["points"]:
        for name in SYSTEMS:
            m = point["systems"][name]
            lines.append(f"| {LABELS[name]} | {point['rate']:g} | {m['achieved_rps']:.1f} | {m['p50_ms']:.1f} | "
                         f"{m['p99_ms']:.1f} | {_num(m.get('server_p50_ms'))} | {_num(m.get('server_p99_ms'))} | "
                         f"{m['errors']:g} |")
    return lines


def _delivery(s: dict[str, Any]) -> list[str]:
    lines = ["", f"### Delivery, vendors at 50 ms ({s['rate']:g} checkouts/s for {s['seconds']:g} s; counted in the "
             f"sandbox inboxes; medians of {s['reps']})", "",
             "| system | checkouts/s achieved | checkout p50/p99 ms | notifications delivered/s during load | "
             "drain after load s | expected | missing | surplus |", "|---|---|---|---|---|---|---|---|"]
    lines.append(f"| {LABELS['floor']} | {NOT_DELIVERING} | | | | | | |")
    for name in DELIVERING:
        m = s["systems"][name]
        lines.append(f"| {LABELS[name]} | {m['achieved_rps']:.1f} | {m['checkout_p50_ms']:.1f}/{m['checkout_p99_ms']:.1f} | "
                     f"{m['delivered_per_s']:.1f} | {_num(m['drain_after_load_s'])} | {m['expected']} | "
                     f"{m['missing']} | {m['surplus']} |")
    return lines


def _channel(c: dict[str, int] | None) -> str:
    if not c:
        return "-"
    return f"{c['once']} / {c['more_than_once']} / {c['missing']}"


def _fault(title: str, by_system: dict[str, Any]) -> list[str]:
    waited = max((m.get("waited_s", 0) for m in by_system.values()), default=0)
    lines = ["", f"### {title} (counted in the sandbox inboxes, one address per checkout; \"not yet\": not "
             f"arrived {waited:g} s after the load)", "",
             "| system | checkouts | answered 201 | orders committed | committed, not answered 201 | max latency ms | "
             "email once / twice+ / not yet | SMS once / twice+ / not yet |", "|---|---|---|---|---|---|---|---|"]
    lines.append(f"| {LABELS['floor']} | {NOT_DELIVERING} | | | | | | |")
    for name in DELIVERING:
        if (m := by_system.get(name)) is None:
            continue
        lines.append(f"| {LABELS[name]} | {m['checkouts']} | {m['answered_201']} | {m['committed']} | "
                     f"{m['committed_not_answered_201']} | {m['max_latency_ms']:.0f} | "
                     f"{_channel(m['channels'].get('email'))} | {_channel(m['channels'].get('sms'))} |")
    return lines


def comparison_markdown(results: dict[str, Any]) -> list[str]:
    """The floor/peer/Beacon section of summary.md, or nothing when the run compared nothing."""
    compare = results.get("compare")
    if not compare:
        return []
    lines = ["", "## Floor, peer and Beacon, side by side", "",
             "Same host, same run, same gunicorn shape; the systems take turns in a rotated order. The host is "
             "shared: read the ratios, not the absolute numbers."]
    lines += [f"- {name}: {text}" for name, text in compare.get("systems", {}).items()]
    lines += [f"- **{key} failed**: {error}" for key, error in compare.get("errors", {}).items()]
    if s := compare.get("max_throughput"):
        lines += _throughput(s)
    if s := compare.get("latency"):
        lines += _latency(s)
    if s := compare.get("delivery"):
        lines += _delivery(s)
    if s := compare.get("faults"):
        outage = next(iter(s["broker_down"].values()), {}).get("outage_seconds")
        lines += _fault(f"Broker down {outage:g} s, then started empty" if outage else "Broker down", s["broker_down"])
        kills = next(iter(s["worker_killed"].values()), {}).get("kills")
        lines += _fault(f"A worker SIGKILLed {kills} time(s), vendors at 300 ms" if kills else "A worker SIGKILLed",
                        s["worker_killed"])
    return lines


def comparison_plot(results: dict[str, Any], out: Path) -> list[str]:
    """`floor_peer_beacon.png`: each system's maximum checkouts/s and bare-view req/s, with its
    ratio to the floor; [] when the run measured no maximum throughput."""
    s = (results.get("compare") or {}).get("max_throughput")
    if not s:
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    positions = range(len(SYSTEMS))
    checkout = [s["checkout"][name]["achieved_rps"] for name in SYSTEMS]
    bare = [s["bare"][name]["achieved_rps"] for name in SYSTEMS]
    ax.bar([p - 0.2 for p in positions], checkout, width=0.4, label="checkout")
    ax.bar([p + 0.2 for p in positions], bare, width=0.4, label="bare view", color="lightgrey")
    for position, name, value in zip(positions, SYSTEMS, checkout, strict=True):
        ax.annotate(f"{_ratio(s['ratio_of_floor'][name])} x floor", (position - 0.2, value), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(list(positions), [LABELS[name] for name in SYSTEMS], fontsize=8)
    ax.set_ylabel("req/s, closed loop")
    ax.set_title(f"Maximum throughput, {s['connections']} connections, workers paused (medians of {s['reps']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "floor_peer_beacon.png", dpi=110)
    plt.close(fig)
    return ["floor_peer_beacon.png"]
