"""The Celery application: configured from Django settings (CELERY_*), tasks autodiscovered."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("beacon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# `celery inspect dispatches_here` (the dispatches running in the trigger listener's threads);
# request id propagation, task metrics and the worker's /metrics exporter.
import config.celery_control  # noqa: E402
import config.celery_signals  # noqa: E402, F401

# kombu's Redis transport: a worker survives a Redis outage, and a channel shares one client
# (see config/kombu_fixes.py).
from config.kombu_fixes import kombu_redis_fixes_install  # noqa: E402

kombu_redis_fixes_install()
