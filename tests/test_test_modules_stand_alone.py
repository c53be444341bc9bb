"""Every test module stands alone: no Python file in the repository imports a test module
(`test_*.py`) or a conftest.py. Shared test data lives in `factories` modules, shared steps in
`helpers` modules, shared fixtures in conftest.py files or in fixture modules the root conftest
names in `pytest_plugins`.

Importing a test module runs its module-level code twice under two names and ties one test's
edits to another's; importing a conftest (or a fixture from it) bypasses pytest's fixture
scoping, which is why such imports used to need `noqa: F401`."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folders that hold no Beacon source: installed packages, services' data, outputs.
NOT_SOURCE = {".git", ".venv", "node_modules", ".devservices", "__pycache__", "artifacts", ".pytest_cache", ".ruff_cache"}


def is_test_module(dotted_name: str) -> bool:
    """A module pytest collects or loads itself: `test_*` or `conftest`."""
    last = dotted_name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_names(source: str, *, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module `source` imports, and of every name it imports from
    one (`from package import test_x` imports a module too), relative imports resolved against
    `module`; plus the modules its `pytest_plugins` names."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, origin
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{origin}.{alias.name}"
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytest_plugins" for target in node.targets
        ):
            for element in ast.walk(node.value):
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    yield node.lineno, element.value


def imports_of_test_modules(source: str, *, module: str) -> list[str]:
    """The test modules and conftests `source` (the text of `module`) imports, with their lines."""
    return [f"line {line}: {name}" for line, name in imported_names(source, module=module) if is_test_module(name)]


def python_files() -> Iterator[Path]:
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(name for name in subfolders if name not in NOT_SOURCE)
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder) / name


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_python_file_imports_a_test_module_or_a_conftest() -> None:
    offenders = {}
    for path in python_files():
        found = imports_of_test_modules(path.read_text(encoding="utf-8"), module=module_name(path))
        if found:
            offenders[str(path.relative_to(ROOT))] = found

    assert offenders == {}, "move what these import into a factories/helpers module or a fixture: " + repr(offenders)


def test_the_scan_reaches_the_test_modules_of_every_test_folder() -> None:
    scanned = {module_name(path) for path in python_files()}

    for expected in (
        "conftest", "checkout.tests.test_checkout_api", "notifications.tests.test_sending", "notifications.tests.conftest",
        "config.tests.test_sentry", "sandbox.tests.test_faults", "tests.security.test_egress_policy",
        "tests.browser.conftest", "tests.test_test_modules_stand_alone",
    ):
        assert expected in scanned


def test_imports_of_test_modules_and_conftests_are_caught_in_every_spelling() -> None:
    caught = {
        "from checkout.tests.test_checkout_api import VALID": "checkout.tests.test_checkout_api",
        "import notifications.tests.test_admin": "notifications.tests.test_admin",
        "import notifications.tests.test_admin as admin_tests": "notifications.tests.test_admin",
        "from notifications.tests import test_admin": "notifications.tests.test_admin",
        "from notifications.tests.conftest import make_trigger  # noqa: F401": "notifications.tests.conftest",
        "from .test_admin import support_client": "notifications.tests.test_admin",
        "from . import conftest": "notifications.tests.conftest",
        "from ..security.listeners import conftest": "tests.security.listeners.conftest",
        "def f():\n    from tests.browser.conftest import login": "tests.browser.conftest",
        "pytest_plugins = ['notifications.tests.test_worker_processes']": "notifications.tests.test_worker_processes",
    }
    for source, name in caught.items():
        module = "tests.browser.test_x" if "..security" in source else "notifications.tests.test_x"

        found = imports_of_test_modules(source, module=module)

        assert any(line.endswith(f": {name}") for line in found), (source, found)


def test_factories_helpers_fixture_modules_and_libraries_are_allowed() -> None:
    allowed = (
        "from checkout.tests.factories import VALID_CHECKOUT, checkout_body",
        "from notifications.tests.helpers import dispatch, run_until_settled",
        "from notifications.tests import factories",
        "from . import factories",
        "from tests.security.listeners import Listener",
        "import pytest\nfrom django.test import Client, TestCase\nfrom django.test.utils import CaptureQueriesContext",
        "import unittest\nfrom hypothesis import given",
        "pytest_plugins = ['notifications.tests.fixtures', 'config.tests.sentry_sink']",
    )
    for source in allowed:
        assert imports_of_test_modules(source, module="notifications.tests.test_x") == [], source
