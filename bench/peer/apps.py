from __future__ import annotations

from django.apps import AppConfig


class PeerConfig(AppConfig):
    name = "bench.peer"
    label = "peer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What cookiecutter-django's config/__init__.py does: the project's Celery app exists
        # (and is the current app, with the broker from settings) in every process, the web's too.
        from bench.peer import celery_app  # noqa: F401
