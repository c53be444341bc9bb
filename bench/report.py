"""summary.md and PNG plots from the results dict of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.compare_report import comparison_markdown, comparison_plot

# What PostgreSQL answers a connection past its max_connections.
CONNECTION_REFUSED = "too many clients"


def connection_refusals(log_dir: Path) -> dict[str, int]:
    """Per process log in `log_dir`, how many times PostgreSQL refused it a connection (only
    logs that were refused). The floor, the peer and Beacon share one server: a run that
    exhausts it measures the refusals, not the systems."""
    counts = {}
    for log in sorted(log_dir.glob("*.log")):
        with log.open(errors="replace") as lines:
            refused = sum(CONNECTION_REFUSED in line for line in lines)
        if refused:
            counts[log.name] = refused
    return counts


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, how far, met) for each target of issues 25 and 6 present in `results`."""
    rows = _issue_25_targets(results)
    s2 = results.get("sync_vs_async")
    if s2:
        red = s2["p99_reduction_pct"]
        server = _server_reduction(s2["sync_fixed"], s2["async_fixed"], "server_p99_ms")
        rows.append(("(issue 6) async p99 >= 97% below sync p99 (300 ms vendors)", f"{red:.1f}% below "
                     f"({s2['async_fixed']['p99_ms']:.0f} vs {s2['sync_fixed']['p99_ms']:.0f} ms at {s2['rate']:g}/s)"
                     + (f"; in the server {server}" if server else ""),
                     f"{red - 97:+.1f} points", red >= 97))
        ratio = s2["max_throughput_ratio"]
        rows.append(("(issue 6) async max throughput >= 10x sync", f"{ratio:.1f}x ({s2['async_max']['achieved_rps']:.0f} "
                     f"vs {s2['sync_max']['achieved_rps']:.0f} req/s)", f"{ratio / 10:.0%} of target", ratio >= 10))
    lost = sum(results[key]["delivery"]["lost"] for key in ("floor", "sync_vs_async", "outage") if key in results)
    lost += sum(p["lost_total"] for p in results.get("pipeline", {}).get("points", []))
    if s5 := results.get("daily_volume"):
        lost += sum(p["lost"] for p in s5["ladder"]) + s5["burst"]["lost"]
    rows.append(("zero lost notifications in every Beacon scenario", f"{lost} lost", "", lost == 0))
    return rows


def _issue_25_targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    rows = []
    compare = results.get("compare") or {}
    s1, s5 = results.get("floor"), results.get("daily_volume")
    if top := compare.get("max_throughput"):
        frac = top["ratio_of_floor"]["beacon"] or 0.0
        running = (top.get("ratio_of_floor_running") or {}).get("beacon")
        measured = (f"{frac:.2f} ({top['checkout']['beacon']['achieved_rps']:.0f} vs "
                    f"{top['checkout']['floor']['achieved_rps']:.0f} checkouts/s, median of {top['reps']} rounds)")
        if running is not None:
            measured += (f"; with the pipeline running {running:.2f} "
                         f"({top['checkout_running']['beacon']['achieved_rps']:.0f}/s)")
        rows.append(("Beacon's checkout max >= 0.6 of the floor's (limitapp.py), workers stopped", measured,
                     f"{frac / 0.6:.0%} of target", frac >= 0.6))
    if s1:
        half = s1["checkout_at_half_max"]
        p50 = half["p50_ms"]
        measured = f"{p50:.1f} ms at {s1['half_rate']:g}/s"
        if half.get("server_p50_ms") is not None:
            measured += f" (in the server {half['server_p50_ms']:.1f} ms)"
        rows.append(("checkout p50 < 10 ms at half of Beacon's max, pipeline running", measured, f"{p50 - 10:+.1f} ms",
                     p50 < 10))
    if s5:
        sus, target = s5["sustained_rps"], s5["target_rps"]
        rows.append((f"{target:g} checkouts/s sustained on the one box, delivery p99 < 1 s, nothing lost",
                     f"{sus:g}/s sustained ({s5['per_day'] / 1e6:.2f} M/day)", f"{sus / target:.0%} of target",
                     sus >= target))
        burst = s5["burst"]
        drained = burst["drain_after_load_s"]
        rows.append((f"60 s burst at {2 * target:g}/s drained within 60 s after it ends",
                     f"burst offered {s5['burst_rate']:g}/s, achieved {burst['checkout']['achieved_rps']:.0f}/s; "
                     + (f"drained {drained:.0f} s after it ended" if drained is not None else "not drained")
                     + f", lost {burst['lost']}", "",
                     bool(s5["burst_drained_within_60s"]) and s5["burst_rate"] >= 2 * target))
    rows += _ahead_of_the_peer(compare)
    return rows


# Two delivery rates closer than this share of the larger are a tie.
RATE_TIE = 0.02


def _ahead_of_the_peer(compare: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """Beacon against the peer: checkout latency under slow vendors, delivery rate, and loss."""
    rows = []
    if latency := compare.get("latency"):
        worse = []
        parts = []
        for point in latency["points"]:
            beacon, peer = point["systems"]["beacon"], point["systems"]["peer"]
            parts.append(f"{point['rate']:g}/s: p50 {beacon['p50_ms']:.1f} vs {peer['p50_ms']:.1f}, "
                         f"p99 {beacon['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms")
            worse += [key for key in ("p50_ms", "p99_ms") if beacon[key] > peer[key]]
        rows.append((f"Beacon ahead of the peer: checkout latency, vendors at {latency.get('vendor_ms', 50)} ms",
                     "Beacon vs peer " + "; ".join(parts), f"behind on {len(worse)}" if worse else "", not worse))
    if delivery := compare.get("delivery"):
        beacon, peer = delivery["systems"]["beacon"], delivery["systems"]["peer"]
        rate, peer_rate = beacon["delivered_per_s"], peer["delivered_per_s"]
        # Within 2% is a tie, not a lead: at a rate both keep up with, both deliver what is offered.
        tied = abs(rate - peer_rate) <= RATE_TIE * max(rate, peer_rate)
        distance = f"tied on rate (within {RATE_TIE:.0%})" if tied else ""
        if beacon["missing"] < peer["missing"]:
            distance += ("; " if distance else "") + f"ahead on missing ({beacon['missing']} vs {peer['missing']})"
        rows.append(("Beacon ahead of the peer: delivery rate (vendors at 50 ms)",
                     f"{rate:.1f} vs {peer_rate:.1f} notifications/s during the load; drained "
                     f"{beacon['drain_after_load_s']:.0f} vs {peer['drain_after_load_s']:.0f} s after; missing "
                     f"{beacon['missing']} vs {peer['missing']}",
                     distance, (tied or rate > peer_rate) and beacon["missing"] <= peer["missing"]))
    if faults := compare.get("faults"):
        lost = {name: 0 for name in ("beacon", "peer")}
        twice = dict(lost)
        for scenario in ("broker_down", "worker_killed"):
            for name, m in faults.get(scenario, {}).items():
                if name in lost:
                    lost[name] += sum(c["missing"] for c in m["channels"].values())
                    twice[name] += sum(c["more_than_once"] for c in m["channels"].values())
        rows.append(("Beacon ahead of the peer: loss (broker down 20 s, a worker killed)",
                     f"Beacon {lost['beacon']} not delivered, {twice['beacon']} twice; peer {lost['peer']} not "
                     f"delivered, {twice['peer']} twice", "",
                     lost["beacon"] == 0 and lost["beacon"] + twice["beacon"] <= lost["peer"] + twice["peer"]))
    return rows


def _server_reduction(sync: dict[str, Any], asynchronous: dict[str, Any], key: str) -> str:
    """'-N.N% (A vs S ms)' for a server-side percentile, or '' when the run has none."""
    before, after = sync.get(key), asynchronous.get(key)
    if not before or after is None:
        return ""
    return f"{100 * (1 - after / before):.1f}% below ({after:.0f} vs {before:.0f} ms)"


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def summary_markdown(results: dict[str, Any]) -> str:
    only = f", only {', '.join(results['only'])}" if results.get("only") else ""
    lines = [f"# Beacon benchmark — {results['started']} ({results['profile']}{only})", ""]
    # A run stopped while the stack was starting has no stack to describe.
    stack = results.get("stack", {})
    lines += ["Machine: " + results["machine"], "", "Stack: " + ("; ".join(f"{k}: {v}" for k, v in stack.items()
                                                                           if k != "pid") or "not started"), ""]
    if server := results.get("database_server"):  # runs before it was recorded have none
        lines += [f"PostgreSQL server: {server}", ""]
    if results.get("interrupted"):
        cause = f" by an error ({results['error']})" if results.get("error") else ""
        lines += [f"**Interrupted**{cause}: the scenarios below that have no numbers did not run.", ""]
    if refusals := results.get("connection_refusals"):
        each = ", ".join(f"{name} {count}" for name, count in refusals.items())
        lines += [f"**PostgreSQL refused connections** (\"{CONNECTION_REFUSED}\") {sum(refusals.values())} times: "
                  f"{each}. The numbers of the processes refused are not comparable: the server's "
                  "max_connections was spent (fewer worker threads, or a larger max_connections: the benchmark's own "
                  "server, without --database-url, has room for every thread it starts).", ""]
    lines += ["## Targets", "", "| target | measured | distance | |", "|---|---|---|---|"]
    for target, measured, distance, ok in targets(results):
        lines.append(f"| {target} | {measured} | {distance} | {_mark(ok)} |")
    if results.get("floor") or results.get("sync_vs_async"):
        lines += ["", "## Latency and throughput (medians of the repetitions)", "",
                  "Client-side latency (the load tool's), and the same requests timed inside gunicorn (its access log).",
                  "", "| scenario | offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | server p50 ms | "
                  "server p99 ms | errors |", "|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, m: dict[str, Any]) -> None:
        offered = f"{m['offered_rps']:g}" if m.get("offered_rps") else "closed loop"
        lines.append(f"| {name} | {offered} | {m['achieved_rps']:.1f} | {m['p50_ms']:.1f} | {m['p95_ms']:.1f} | "
                     f"{m['p99_ms']:.1f} | {_ms(m.get('server_p50_ms'))} | {_ms(m.get('server_p99_ms'))} | "
                     f"{m['errors']:g} |")

    if s1 := results.get("floor"):
        row("1. floor /healthz, max", s1["floor_max"])
        row("1. checkout, max", s1["checkout_max"])
        row("1. floor /healthz at half checkout max", s1["floor_at_half_max"])
        row("1. checkout at half its max", s1["checkout_at_half_max"])
    if s2 := results.get("sync_vs_async"):
        row("2. sync (300 ms vendors), max", s2["sync_max"])
        row("2. async (300 ms vendors), max", s2["async_max"])
        row("2. sync, fixed rate", s2["sync_fixed"])
        row("2. async, same rate", s2["async_fixed"])
        lines.append(f"\nSync -> async at {s2['rate']:g}/s: p50 -{s2['p50_reduction_pct']:.1f}%, "
                     f"p99 -{s2['p99_reduction_pct']:.1f}% (case study: -75%).")
        if server := _server_reduction(s2["sync_fixed"], s2["async_fixed"], "server_p99_ms"):
            lines.append(f"Inside gunicorn, async p99 is {server}.")
    if s3 := results.get("outage"):
        lines += ["", f"## 3. SMS primary outage ({s3['rate']:g} checkouts/s)", "", "| phase | requests | p50 ms | p95 ms | p99 ms |",
                  "|---|---|---|---|---|"]
        for phase, m in s3["phases"].items():
            lines.append(f"| {phase} | {m['requests']} | {m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['p99_ms']:.1f} |")
        opened = s3["circuit_open_after_s"]
        lines.append(f"\nSMS sent by the fallback: {s3['failed_over_sms']}; circuit open "
                     f"{f'{opened:.1f} s' if opened is not None else 'never'} after the outage began; lost: "
                     f"{s3['delivery']['lost']}.")
    if s4 := results.get("pipeline"):
        lines += ["", "## 4. Pipeline (vendors at 50 ms)", "",
                  "| workers | offered/s | checkout p50/p99 ms | delivered/s | delivery p50 ms | delivery p99 ms | "
                  "max queue | drain after load s | lost |", "|---|---|---|---|---|---|---|---|---|"]
        for p in s4["points"]:
            rate = p["runs"][0]["rate"]
            drain = f"{p['drain_after_load_s']:.1f}" if p["drain_after_load_s"] is not None else "-"
            lines.append(f"| {p['pool']} x{p['processes']} | {rate:g} | {p['checkout_p50_ms']:.1f}/{p['checkout_p99_ms']:.1f} | "
                         f"{p['delivered_per_s']:.1f} | {p['delivery_p50_ms']:.0f} | {p['delivery_p99_ms']:.0f} | "
                         f"{p['max_queue_depth']:.0f} | {drain} | {p['lost_total']} |")
    if s5 := results.get("daily_volume"):
        lines += ["", "## 5. Daily volume", ""]
        for p in s5["ladder"]:
            lines.append(f"- {p['rate']:g}/s: delivered {p['delivered_per_s']:.1f}/s, delivery p99 "
                         f"{p['delivery_p99_ms']:.0f} ms, max queue {p['max_queue_depth']}, "
                         f"{'sustained' if p['sustained'] else 'not sustained'}")
        lines.append(f"\nSustained: {s5['sustained_rps']:g} checkouts/s = {s5['per_day'] / 1e6:.2f} million/day "
                     f"({s5['fraction_of_case_study']:.0%} of the case study's 10 million). Burst at "
                     f"{s5['burst_rate']:g}/s: drained {s5['burst']['drain_after_load_s'] or 0:.0f} s after it ended, "
                     f"lost {s5['burst']['lost']}.")
    lines += comparison_markdown(results)
    lines += ["", "Plots: " + (", ".join(results.get("plots", [])) or "none (the scenarios they show did not run)"), ""]
    return "\n".join(lines)


def plots(results: dict[str, Any], out: Path) -> list[str]:
    made = []
    s1, s2 = results.get("floor"), results.get("sync_vs_async")
    if s1 and s2:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        names = ["sync", "async"]
        for offset, key in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
            values = [s2["sync_fixed"][key], s2["async_fixed"][key]]
            left.bar([i + offset for i in range(2)], values, width=0.4, label=key.replace("_ms", ""))
        left.set_xticks(range(2), names)
        left.set_yscale("log")
        left.set_ylabel("checkout latency, ms (log)")
        left.set_title(f"Checkout at {s2['rate']:g}/s, vendors 300 ms")
        left.legend()
        labels = ["floor", "checkout", "sync\n300 ms", "async\n300 ms"]
        values = [s1["floor_max"]["achieved_rps"], s1["checkout_max"]["achieved_rps"], s2["sync_max"]["achieved_rps"],
                  s2["async_max"]["achieved_rps"]]
        right.bar(labels, values, color=["grey", "tab:blue", "tab:red", "tab:green"])
        right.set_ylabel("max throughput, req/s (closed loop)")
        right.set_title("Maximum throughput")
        fig.tight_layout()
        fig.savefig(out / "latency_throughput.png", dpi=110)
        plt.close(fig)
        made.append("latency_throughput.png")
    if s3 := results.get("outage"):
        fig, ax = plt.subplots(figsize=(11, 3.5))
        t0 = s3["marks"]["outage_start"]
        xs = [t - t0 for t, _ in s3["latencies_raw"]]
        ax.scatter(xs, [lat for _, lat in s3["latencies_raw"]], s=3)
        ax.axvspan(0, s3["marks"]["outage_end"] - t0, color="red", alpha=0.15, label="sms-primary down")
        ax.set_yscale("log")
        ax.set_xlabel("seconds from outage start")
        ax.set_ylabel("checkout latency, ms (log)")
        ax.set_title(f"Checkout latency through an SMS vendor outage ({s3['rate']:g}/s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "outage.png", dpi=110)
        plt.close(fig)
        made.append("outage.png")
    if s4 := results.get("pipeline"):
        fig, ax = plt.subplots(figsize=(11, 3.5))
        for point in s4["points"]:
            run = point["runs"][0]
            samples = run["queue_samples"]
            if samples:
                t0 = samples[0][0]
                ax.plot([t - t0 for t, _ in samples], [d for _, d in samples], label=f"{point['pool']} x{point['processes']}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("queued tasks")
        ax.set_title("Broker queue depth during scenario 4")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "pipeline_queue.png", dpi=110)
        plt.close(fig)
        made.append("pipeline_queue.png")
    made += comparison_plot(results, out)
    return made
