"""The fault suites' runner (chaos/runner.py, used by `make chaos` and `make cluster-test`) ends
the console with what failed: a CI log's tail shows the summary table and each failed check
after the process logs, not the logs alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.processes import ROOT

# A suite of two scenarios, one failing, on a harness stack whose only process is a talker.
SUITE = """
import os, sys, time
from pathlib import Path
from chaos.run import table
from chaos.runner import Suite, suite_run
from harness.processes import PYTHON, ManagedProcess, wait_until
from harness.stack import Stack, StackOptions

out = Path(sys.argv[1])
stack = Stack(StackOptions(log_dir=out, database_url=os.environ["DATABASE_URL"], redis_url=os.environ["REDIS_URL"],
                           broker_url=os.environ["REDIS_URL"], sandbox=False))

def start():
    talker = ManagedProcess("talker", [PYTHON, "-c", "import time; print('talker is up', flush=True); time.sleep(60)"],
                            env=dict(os.environ), log_dir=out)
    stack.process_start("talker", talker)
    wait_until(lambda: "talker is up" in talker.log_path.read_text(), timeout=30, what="the talker")
    if sys.argv[2] == "broken":
        raise RuntimeError("the sandbox never answered")
    return "key"

def duplicated(chaos):
    from chaos.scenarios.common import ScenarioResult
    result = ScenarioResult(1, "answer lost")
    result.check("no unflagged duplicate", False, "2 unflagged")
    result.check("every checkout answered 201", True)
    return result

def clean(chaos):
    from chaos.scenarios.common import ScenarioResult
    result = ScenarioResult(2, "redis outage")
    result.check("every checkout answered 201", True)
    return result

suite = Suite(label="demo", title="# Demo run", intro="Counts are made up.", table=table,
              scenarios=lambda: {1: duplicated, 2: clean}, scenario_name=lambda scenario: scenario.__name__)
sys.exit(suite_run(suite, stack, start=start, only="", out=out, started=time.time()))
"""


def run_suite(out: Path, mode: str) -> tuple[int, list[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    done = subprocess.run([sys.executable, "-c", SUITE, str(out), mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    return done.returncode, [line for line in done.stdout.splitlines() if line.strip()]


def test_a_failed_scenario_ends_the_console_with_the_table_and_the_failed_check(tmp_path: Path) -> None:
    status, lines = run_suite(tmp_path, "runs")

    assert status == 1
    logs = lines.index(f"--- last lines of talker ({tmp_path / 'talker.log'})")
    assert lines[logs + 1] == "talker is up"
    # After the logs, and last: the table, the failed check, the verdict.
    assert lines[logs + 2].startswith("| # | scenario |")
    assert lines[-5].startswith("| 1 | answer lost |") and lines[-5].endswith("| FAIL |")
    assert lines[-4].startswith("| 2 | redis outage |") and lines[-4].endswith("| PASS |")
    assert lines[-3:-1] == ["Failed checks:", "FAIL scenario 1 (answer lost): no unflagged duplicate: 2 unflagged"]
    assert lines[-1].startswith("demo: 1/2 scenarios passed in ")
    # The same block is kept for a caller that prints it later (cluster/run.py, after its teardown).
    assert (tmp_path / "summary.txt").read_text().splitlines()[-3:] == lines[-3:]
    assert "- [ ] no unflagged duplicate: 2 unflagged" in (tmp_path / "summary.md").read_text()


def test_a_stack_that_cannot_start_ends_the_console_with_why(tmp_path: Path) -> None:
    status, lines = run_suite(tmp_path, "broken")

    assert status == 2
    logs = lines.index(f"--- last lines of talker ({tmp_path / 'talker.log'})")
    assert lines.index("demo: the stack could not start:") > logs
    assert lines[-1] == "RuntimeError: the sandbox never answered"
    assert not (tmp_path / "summary.md").exists()
