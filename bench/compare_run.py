"""`bench.run --only compare,faults`: start the floor and the peer beside Beacon's stack, run
the side-by-side scenarios, stop them. Results go into the run's `results["compare"]`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.compare import COMPARE_FULL, COMPARE_QUICK, Systems, delivery, latency_at_rates, max_throughput
from bench.faults import faults
from bench.stack import Stack

logger = logging.getLogger(__name__)


def comparison_run(stack: Stack, out: dict[str, Any], *, quick: bool, wanted: set[str], server_url: str,
                   log_dir: Path, echo) -> None:
    """Fill `out` scenario by scenario (an interrupted run keeps what finished); the faults run
    last, since they restart Beacon's Redis and replace its workers."""
    cp = COMPARE_QUICK if quick else COMPARE_FULL
    systems = Systems(stack, server_url=server_url, log_dir=log_dir)
    out["profile"] = cp.name
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if "compare" in wanted:
        steps += [("max_throughput", lambda: max_throughput(systems, cp, log_dir, echo)),
                  ("latency", lambda: latency_at_rates(systems, cp, log_dir, echo)),
                  ("delivery", lambda: delivery(systems, cp, log_dir, echo))]
    if "faults" in wanted:
        steps.append(("faults", lambda: faults(systems, cp, echo)))
    try:
        systems.start(echo)
        out["systems"] = systems.describe()
        for key, step in steps:
            try:
                out[key] = step()
            except Exception as exc:  # one broken scenario must not lose the others' results
                logger.exception("comparison scenario %s failed", key)
                out.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
                echo(f"  {key} failed ({type(exc).__name__}: {exc}); going on with the next scenario")
    finally:
        systems.stop()
