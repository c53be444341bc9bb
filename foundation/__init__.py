"""The floor every app may import: request context, middleware and small shared helpers.

It imports no app (`checkout`, `notifications`, `sandbox`) and nothing from `config`, which is
the top (settings, urls, wsgi/asgi, the Celery app): apps stand on the floor, config wires them.
docs/architecture.md says what lives where; tests/test_import_boundaries.py holds the arrows.
"""
