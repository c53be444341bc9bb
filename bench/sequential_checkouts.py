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
import subprocess
import time
import urllib.request

from bench.stack import database_recreate, stop_on_sigterm
from harness.processes import PYTHON, RedisServer, free_port, gunicorn, stack_env, wait_until

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
    database_url = database_recreate(os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon"))
    redis = RedisServer().start()
    env = stack_env(database_url=database_url, redis_url=redis.url(0), CACHE_URL=redis.url(1))
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], env=env, check=True)
    created = subprocess.run(
        [PYTHON, "manage.py", "create_api_client", "sequential", "--rate-limit", "100000"],
        env=env, capture_output=True, text=True, check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    web = gunicorn(env, port=port, workers=2, threads=4).start()
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200, timeout=30)
        conn = http.client.HTTPConnection("127.0.0.1", port)
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
        web.stop()
        redis.stop()


if __name__ == "__main__":
    main()
