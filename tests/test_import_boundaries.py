"""The arrows between Beacon's packages (docs/architecture.md), held by reading every import.

- `notifications` never imports `checkout`: a trigger carries what its templates need, and the
  checkout's API clients are used by `events_api`, which stands beside both.
- `foundation` (the floor) imports no other package of Beacon's.
- No app imports `config` (the top), except the Celery app that publishing needs.

Test modules and migrations are left out: tests drive whole flows across the apps, and a
migration is a frozen record.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("checkout", "notifications", "events_api", "sandbox", "money")
FIRST_PARTY = (*APPS, "foundation", "config", "harness", "bench", "chaos", "cluster", "scripts", "tests")
# What an app may import from the top: the Celery app, to publish a task (config/celery.py).
CONFIG_ALLOWED_IN_APPS = frozenset({"config.celery"})


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `path`, function-level ones included."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def source_files(package: str) -> list[Path]:
    return sorted(
        path for path in (ROOT / package).rglob("*.py")
        if "tests" not in path.relative_to(ROOT).parts and "migrations" not in path.relative_to(ROOT).parts
    )


def imports_of(package: str, *, matching: tuple[str, ...]) -> list[str]:
    """"file:line module" for each import in `package`'s sources of a module under `matching`."""
    found = []
    for path in source_files(package):
        for line, module in imported_modules(path):
            if module.split(".")[0] in matching:
                found.append(f"{path.relative_to(ROOT)}:{line} {module}")
    return found


def test_the_rule_reads_real_imports() -> None:
    """The reader sees the arrows that are allowed, so an empty list below means something."""
    assert any(entry.endswith(" notifications.services") for entry in imports_of("checkout", matching=("notifications",)))
    assert any(" foundation." in entry for entry in imports_of("notifications", matching=("foundation",)))


def test_notifications_never_imports_checkout() -> None:
    assert imports_of("notifications", matching=("checkout", "events_api")) == []


def test_the_floor_imports_no_other_package_of_beacon() -> None:
    assert imports_of("foundation", matching=tuple(p for p in FIRST_PARTY if p != "foundation")) == []


@pytest.mark.parametrize("app", APPS)
def test_apps_do_not_import_the_top(app: str) -> None:
    found = [entry for entry in imports_of(app, matching=("config",)) if entry.split()[-1] not in CONFIG_ALLOWED_IN_APPS]
    assert found == []
