"""Locust at a fixed offered rate (open loop), driven by bench/load.py through environment variables.

Every user sends one request per period (users / rate seconds) on a fixed schedule, user number
i at i / rate seconds into each period, so the whole swarm offers `rate` evenly spaced requests
per second, as long as an answer takes less than one period (load.py sizes it at several times
the expected latency, and reports the achieved rate beside the offered one, so a saturated point
shows). Neither locust's spawning nor its `constant_throughput` keeps the phases apart: users
started in the same second, or realigned by `constant_throughput`'s first wait, fire together in
bursts. Every request is recorded raw (start time, latency, status) and written to BENCH_OUT as
JSON when locust quits.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import gevent
from locust import FastHttpUser, events, task

PATH = os.environ.get("BENCH_PATH", "/healthz")
METHOD = os.environ.get("BENCH_METHOD", "GET")
BODY = os.environ.get("BENCH_BODY", "")
KEY = os.environ.get("BENCH_KEY", "")
RATE = float(os.environ.get("BENCH_RATE", "10"))
USERS = int(os.environ.get("BENCH_USERS", "10"))
OUT = os.environ.get("BENCH_OUT", "")
LABEL = os.environ.get("BENCH_LABEL", "load")
# Seconds between progress lines on stdout.
PROGRESS_EVERY = 5.0

samples: list[tuple[float, float, int]] = []
_started = time.time()
_user_numbers = itertools.count()


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, start_time=None,
            **kwargs) -> None:
    status = getattr(response, "status_code", 0) or 0
    if exception is not None and not status:
        status = -1
    samples.append((start_time or time.time(), response_time, int(status)))


def _progress() -> None:
    seen = 0
    while True:
        gevent.sleep(PROGRESS_EVERY)
        window = samples[seen:]
        seen += len(window)
        latencies = sorted(s[1] for s in window)
        p50 = latencies[len(latencies) // 2] if latencies else 0.0
        errors = sum(1 for s in window if not 200 <= s[2] < 300)
        print(f"[load] {LABEL}: t={time.time() - _started:5.0f}s {len(window) / PROGRESS_EVERY:6.1f} req/s "
              f"(offered {RATE:g}) p50 {p50:6.1f} ms errors {errors}", flush=True)


@events.test_start.add_listener
def _start(environment, **kwargs) -> None:
    gevent.spawn(_progress)


@events.quitting.add_listener
def _dump(environment, **kwargs) -> None:
    if OUT:
        with open(OUT, "w") as handle:
            json.dump({"samples": samples}, handle)
    print(f"[load] {LABEL}: {len(samples)} requests recorded", file=sys.stdout, flush=True)


class BenchUser(FastHttpUser):
    # A request that takes this long counts as failed (seconds).
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        # This user's requests are due at phase + k * period, whatever each one takes.
        self._due = time.monotonic() + (next(_user_numbers) % USERS) / RATE
        gevent.sleep(max(0.0, self._due - time.monotonic()))

    def wait_time(self) -> float:
        self._due += USERS / RATE
        return max(0.0, self._due - time.monotonic())

    @task
    def hit(self) -> None:
        headers = {"Content-Type": "application/json"}
        if KEY:
            headers["Authorization"] = f"Bearer {KEY}"
        if METHOD == "POST":
            self.client.post(PATH, data=BODY, headers=headers, name=PATH)
        else:
            self.client.get(PATH, headers=headers, name=PATH)
