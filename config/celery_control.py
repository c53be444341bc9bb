"""Remote-control commands of Beacon's workers, beside Celery's own (`celery inspect <name>`).

Imported by config/celery.py, so every worker registers them.
"""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command


@inspect_command()
def dispatches_here(state: Any, **_: Any) -> dict[str, int]:
    """The trigger dispatches this worker's listener threads are running: work that `celery
    inspect active` does not list, as it is not a task (notifications/trigger_dispatch_threads.py)."""
    from notifications.trigger_listener import worker_dispatches_here_running

    return {"running": worker_dispatches_here_running()}
