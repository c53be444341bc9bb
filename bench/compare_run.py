"""`bench.run --only compare,faults`: start the floor and the peer beside Beacon's stack, run
the side-by-side scenarios, stop them. Results go into the run's `results["compare"]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.compare import COMPARE_FULL, COMPARE_QUICK, Systems, delivery, latency_at_rates, max_throughput
from bench.faults import faults
from bench.stack import Stack


def comparison_run(stack: Stack, out: dict[str, Any], *, quick: bool, wanted: set[str], server_url: str,
                   log_dir: Path, echo) -> None:
    """Fill `out` scenario by scenario (an interrupted run keeps what finished); the faults run
    last, since they restart Beacon's Redis and replace its workers."""
    cp = COMPARE_QUICK if quick else COMPARE_FULL
    systems = Systems(stack, server_url=server_url, log_dir=log_dir)
    out["profile"] = cp.name
    try:
        systems.start(echo)
        out["systems"] = systems.describe()
        if "compare" in wanted:
            out["max_throughput"] = max_throughput(systems, cp, log_dir, echo)
            out["latency"] = latency_at_rates(systems, cp, log_dir, echo)
            out["delivery"] = delivery(systems, cp, log_dir, echo)
        if "faults" in wanted:
            out["faults"] = faults(systems, cp, echo)
    finally:
        systems.stop()
