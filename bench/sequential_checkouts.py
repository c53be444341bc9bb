"""The foundation's measurement: p50 of 200 sequential checkouts (a measurement, not a test).

    python -m bench.sequential_checkouts        # with DATABASE_URL / REDIS_URL as for make test

One keep-alive client, one checkout at a time, against gunicorn (2 workers x 4 threads) on the
benchmark's own database and a private Redis; 20 warm-up requests are not counted.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.stack import BENCH_DATABASE, stop_on_sigterm
from harness.database import database_url
from harness.stack import Stack, StackOptions

CHECKOUTS = 200
WARMUP = 20
BODY = json.dumps({
    "customer": {"name": "Ana", "email": "ana@example.com", "phone": "+447911123456", "locale": "en"},
    "lines": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "9.50"}],
    "currency": "EUR",
    "payment_token": "tok_ok",
})


def main() -> None:
    stop_on_sigterm()
    server_url = os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon")
    stack = Stack(StackOptions(log_dir=Path(tempfile.mkdtemp(prefix="beacon-sequential-")),
                               database_url=database_url(server_url, BENCH_DATABASE), sandbox=False))
    try:
        stack.services_start()
        stack.database_create()
        key = stack.manage("create_api_client", "sequential", "--rate-limit", "100000").strip().splitlines()[-1]
        stack.web_start(CACHE_URL=stack.redis.url(1))
        conn = http.client.HTTPConnection("127.0.0.1", stack.web_port)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        samples = []
        for n in range(WARMUP + CHECKOUTS):
            started = time.perf_counter()
            conn.request("POST", "/api/v1/checkouts/", BODY, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise SystemExit(f"checkout {n} answered {response.status}")
            if n >= WARMUP:
                samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        print(
            f"{CHECKOUTS} sequential checkouts: p50 {statistics.median(samples):.2f} ms, "
            f"p90 {samples[int(CHECKOUTS * 0.9) - 1]:.2f} ms, p99 {samples[int(CHECKOUTS * 0.99) - 1]:.2f} ms, "
            f"max {samples[-1]:.2f} ms"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
