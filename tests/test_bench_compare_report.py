"""The summary's floor / peer / Beacon tables: one table per scenario, a row per system, the
ratios to the floor measured round by round."""

from __future__ import annotations

from pathlib import Path

from bench.compare import SYSTEMS, rotated
from bench.report import plots, summary_markdown, targets


def _load(rps: float, p50: float = 5.0, p99: float = 20.0) -> dict:
    return {"achieved_rps": rps, "offered_rps": None, "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "errors": 0,
            "server_p50_ms": p50 - 1, "server_p99_ms": p99 - 1}


def _channels(once: int, twice: int, never: int) -> dict:
    return {"expected": once + twice + never, "once": once, "more_than_once": twice, "missing": never,
            "extra_copies": twice}


RESULTS = {
    "started": "20261207-013000", "profile": "quick", "only": ["compare", "faults"], "machine": "2 vCPU",
    "stack": {"web": "gunicorn"},
    "compare": {
        "profile": "quick",
        "systems": {"floor": "limitapp.py", "peer": "DRF + Celery"},
        "max_throughput": {
            "connections": 8, "reps": 3,
            "checkout": {"floor": _load(1400), "peer": _load(300), "beacon": _load(480)},
            "bare": {"floor": _load(5500), "peer": _load(2000), "beacon": _load(3300)},
            "round_ratios": {"floor": [1.0, 1.0, 1.0], "peer": [0.2, 0.22, 0.21], "beacon": [0.33, 0.35, 0.34]},
            "ratio_of_floor": {"floor": 1.0, "peer": 0.21, "beacon": 0.34},
        },
        "latency": {"reps": 3, "points": [{"rate": 25, "systems": {"floor": _load(25, 2, 6), "peer": _load(25, 9, 40),
                                                                   "beacon": _load(25, 7, 30)}}]},
        "delivery": {"rate": 60, "seconds": 60, "reps": 1, "systems": {
            "peer": {"achieved_rps": 59.8, "checkout_p50_ms": 12, "checkout_p99_ms": 80, "delivered_per_s": 70.5,
                     "drain_after_load_s": 30.0, "expected": 7200, "missing": 0, "surplus": 0},
            "beacon": {"achieved_rps": 60.0, "checkout_p50_ms": 9, "checkout_p99_ms": 50, "delivered_per_s": 119.0,
                       "drain_after_load_s": 1.5, "expected": 7200, "missing": 0, "surplus": 0},
        }},
        "faults": {
            "broker_down": {
                "peer": {"checkouts": 175, "answered_201": 60, "committed": 170, "committed_not_answered_201": 110,
                         "max_latency_ms": 30000, "outage_seconds": 20, "waited_s": 240,
                         "channels": {"email": _channels(60, 0, 110), "sms": _channels(60, 0, 110)}},
                "beacon": {"checkouts": 175, "answered_201": 175, "committed": 175, "committed_not_answered_201": 0,
                           "max_latency_ms": 80, "outage_seconds": 20,
                           "channels": {"email": _channels(175, 0, 0), "sms": _channels(175, 0, 0)}},
            },
            "worker_killed": {
                "peer": {"checkouts": 120, "answered_201": 120, "committed": 120, "committed_not_answered_201": 0,
                         "max_latency_ms": 40, "kills": 2,
                         "channels": {"email": _channels(110, 2, 8), "sms": _channels(112, 0, 8)}},
            },
        },
    },
}


def test_each_scenario_has_one_table_with_a_row_per_system() -> None:
    summary = summary_markdown(RESULTS)

    assert "## Floor, peer and Beacon, side by side" in summary
    throughput = summary.split("### Maximum throughput")[1].split("###")[0]
    assert "| floor (limitapp.py) | 1400 | 1.00 |" in throughput
    assert "| peer (DRF + Celery defaults) | 300 | 0.21 | 0.20, 0.22, 0.21 |" in throughput
    assert "| Beacon | 480 | 0.34 | 0.33, 0.35, 0.34 | 5.0 | 20.0 | 4.0 | 0 | 3300 |" in throughput
    latency = summary.split("### Checkout latency at fixed rates")[1].split("###")[0]
    assert "| peer (DRF + Celery defaults) | 25 | 25.0 | 9.0 | 40.0 | 8.0 | 39.0 | 0 |" in latency
    assert latency.count("| 25 |") == len(SYSTEMS)


def test_the_delivery_and_fault_tables_say_the_floor_delivers_nothing() -> None:
    summary = summary_markdown(RESULTS)

    delivery = summary.split("### Delivery, vendors at 50 ms")[1].split("###")[0]
    assert "| floor (limitapp.py) | — (delivers nothing" in delivery
    assert "| Beacon | 60.0 | 9.0/50.0 | 119.0 | 1.5 | 7200 | 0 | 0 |" in delivery
    broker = summary.split("### Broker down 20 s, then started empty")[1].split("###")[0]
    assert "\"not yet\": not arrived 240 s after the load" in broker
    assert "| peer (DRF + Celery defaults) | 175 | 60 | 170 | 110 | 30000 | 60 / 0 / 110 | 60 / 0 / 110 |" in broker
    assert "| Beacon | 175 | 175 | 175 | 0 | 80 | 175 / 0 / 0 | 175 / 0 / 0 |" in broker
    killed = summary.split("### A worker SIGKILLed 2 time(s), vendors at 300 ms")[1]
    assert "| peer (DRF + Celery defaults) | 120 | 120 | 120 | 0 | 40 | 110 / 2 / 8 | 112 / 0 / 8 |" in killed
    assert "| Beacon |" not in killed.split("Plots:")[0]  # a system that did not run has no row


def test_a_run_without_the_comparison_has_no_such_section() -> None:
    results = {k: v for k, v in RESULTS.items() if k != "compare"}

    assert "side by side" not in summary_markdown(results)


def test_each_system_goes_first_once_in_three_rounds() -> None:
    orders = [rotated(SYSTEMS, rep) for rep in range(3)]

    assert [order[0] for order in orders] == ["floor", "peer", "beacon"]
    assert all(sorted(order) == sorted(SYSTEMS) for order in orders)


def test_the_plots_include_the_three_systems_throughput_only_when_it_was_measured(tmp_path: Path) -> None:
    assert plots(RESULTS, tmp_path) == ["floor_peer_beacon.png"]
    assert (tmp_path / "floor_peer_beacon.png").read_bytes().startswith(b"\x89PNG")

    without = {**RESULTS, "compare": {k: v for k, v in RESULTS["compare"].items() if k != "max_throughput"}}
    assert plots(without, tmp_path / "none") == []


def test_the_targets_table_judges_issue_25_against_the_floor_and_the_peer() -> None:
    results = {**RESULTS, "compare": {**RESULTS["compare"], "max_throughput": {
        **RESULTS["compare"]["max_throughput"],
        "checkout_running": {"peer": _load(250), "beacon": _load(400)},
        "round_ratios_running": {"peer": [0.18, 0.18, 0.17], "beacon": [0.29, 0.28, 0.3]},
        "ratio_of_floor_running": {"peer": 0.18, "beacon": 0.29},
    }}}
    rows = {target: (measured, met) for target, measured, _, met in targets(results)}

    measured, met = rows["Beacon's checkout max >= 0.6 of the floor's (limitapp.py), workers stopped"]
    assert measured.startswith("0.34 (480 vs 1400 checkouts/s, median of 3 rounds); with the pipeline running 0.29")
    assert not met
    measured, met = rows["Beacon ahead of the peer: checkout latency, vendors at 50 ms"]
    assert "25/s: p50 7.0 vs 9.0, p99 30.0 vs 40.0 ms" in measured and met
    assert rows["Beacon ahead of the peer: delivery rate (vendors at 50 ms)"][1]
    measured, met = rows["Beacon ahead of the peer: loss (broker down 20 s, a worker killed)"]
    assert measured == "Beacon 0 not delivered, 0 twice; peer 236 not delivered, 2 twice" and met
    running = summary_markdown(results).split("The same closed loop with the pipeline running")[1].split("###")[0]
    assert "| Beacon | 400 | 0.29 | 0.29, 0.28, 0.30 |" in running


def test_beacon_behind_the_peer_on_latency_is_a_missed_target() -> None:
    slower = {**RESULTS["compare"]["latency"], "points": [
        {"rate": 25, "systems": {"floor": _load(25, 2, 6), "peer": _load(25, 9, 40), "beacon": _load(25, 11, 30)}}]}
    results = {**RESULTS, "compare": {**RESULTS["compare"], "latency": slower}}
    rows = {target: (distance, met) for target, _, distance, met in targets(results)}

    assert rows["Beacon ahead of the peer: checkout latency, vendors at 50 ms"] == ("behind on 1", False)


def _with_delivery(peer_rate: float, peer_missing: int, beacon_rate: float, beacon_missing: int) -> dict:
    delivery = RESULTS["compare"]["delivery"]
    systems = {**delivery["systems"],
               "peer": {**delivery["systems"]["peer"], "delivered_per_s": peer_rate, "missing": peer_missing},
               "beacon": {**delivery["systems"]["beacon"], "delivered_per_s": beacon_rate, "missing": beacon_missing}}
    return {**RESULTS, "compare": {**RESULTS["compare"], "delivery": {**delivery, "systems": systems}}}


def _delivery_row(results: dict) -> tuple[str, str, bool]:
    rows = {target: (measured, distance, met) for target, measured, distance, met in targets(results)}
    return rows["Beacon ahead of the peer: delivery rate (vendors at 50 ms)"]


def test_equal_delivery_rates_are_a_tie_not_a_lead() -> None:
    measured, distance, met = _delivery_row(_with_delivery(119.8, 36, 120.0, 0))

    assert "120.0 vs 119.8 notifications/s" in measured and "missing 0 vs 36" in measured
    assert distance == "tied on rate (within 2%); ahead on missing (0 vs 36)"
    assert met  # not behind on rate, and fewer missing


def test_a_slower_delivery_rate_or_more_missing_misses_the_target() -> None:
    _, distance, met = _delivery_row(_with_delivery(120.0, 0, 110.0, 0))
    assert distance == "" and not met

    _, _, met = _delivery_row(_with_delivery(100.0, 0, 120.0, 3))
    assert not met
