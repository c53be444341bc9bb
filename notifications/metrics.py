"""Prometheus metrics of the notifications app: a flat list of metric definitions, nothing else."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CIRCUIT_TRANSITIONS = Counter(
    "beacon_circuit_transitions_total",
    "Vendor circuit breaker state transitions seen by this process.",
    ["vendor", "from_state", "to_state"],
)

CIRCUIT_STATE = Gauge(
    "beacon_circuit_state",
    "Vendor circuit breaker state last seen by this process: 0 closed, 1 half_open, 2 open.",
    ["vendor"],
    multiprocess_mode="mostrecent",
)
