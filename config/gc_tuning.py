"""Garbage collection in long-running server processes: freeze what start-up built.

A loaded web or worker process holds 115,000-135,000 long-lived objects (Django, DRF, Celery,
Beacon's modules). CPython's full (generation 2) collection walks every one of them each time
enough new objects have survived: at 30 checkouts/s a web process ran one or two a minute,
120-200 ms each on the benchmark's machine, with every request thread of the process stalled.
`gc.freeze()` moves the objects alive at the end of start-up into a permanent generation that
collections no longer walk; the same full collections then took 12-27 ms. Everything allocated
after start-up is collected as before.

Called once per process: gunicorn's `post_worker_init` hook (config/gunicorn.conf.py) and
Celery's `worker_ready` / `worker_process_init` signals (config/celery_signals.py).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def startup_objects_freeze(*, import_views: bool = False) -> int:
    """Collect start-up garbage, then freeze the survivors; returns how many were frozen.

    `import_views`: import the URLconf (and so every view, serializer and admin page) first,
    as a web process would on its first request, so those objects are frozen too.
    """
    if import_views:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - the import is the point
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d start-up objects out of garbage collection", frozen)
    return frozen
