"""Gunicorn settings: `gunicorn -c config/gunicorn.conf.py config.wsgi:application ...`.

Bind address, workers and threads stay on the command line (Procfile). This file holds the
server hooks Beacon needs:
- with prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
  deploy/with-metrics-dir), a worker that exits must be marked dead so its live gauges leave
  the merged /metrics; its counters stay, so totals never go backwards;
- a worker, once it has loaded the application, freezes its start-up objects out of garbage
  collection (config/gc_tuning.py);
- no control socket shared by every gunicorn of the user (below).
"""

from __future__ import annotations

import os
from typing import Any

# gunicorn (24+) opens a control socket at one path per user by default ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl): every gunicorn of the user, two checkouts' `make run`, the bench's
# and the tests' included, would fight over that one file. Beacon uses none of its commands, so
# it is off unless GUNICORN_CONTROL_SOCKET names a path of this instance's own.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    from config.gc_tuning import startup_objects_freeze

    startup_objects_freeze(import_views=True)


# Request header limits. gunicorn answers a header over its limit with its own HTML 431/400
# before Django sees the request; the default (8190 bytes per header) turned a 10,000-character
# Idempotency-Key into such a page. With 32 KiB per header such keys reach Django and get the
# API's JSON 400 (`invalid_idempotency_key`); beyond it, and for what gunicorn refuses to parse
# at all (a control character in a header value, a malformed request line), the HTML answer
# stays: no application code runs for those requests (README, "Security").
limit_request_field_size = 32 * 1024
limit_request_fields = 100
limit_request_line = 8190
