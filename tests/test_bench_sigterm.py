"""A benchmark stopped with TERM (make interrupted, a CI timeout) unwinds like Ctrl-C, so its
`finally` stops the processes it started instead of leaving them running."""

from __future__ import annotations

import subprocess
import sys

from harness.processes import ROOT

UNWINDS = """
import os, signal, time
from bench.stack import stop_on_sigterm
stop_on_sigterm()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    print("not interrupted")
finally:
    print("cleanup ran")
"""


def test_a_term_signal_runs_the_benchmarks_cleanup() -> None:
    result = subprocess.run([sys.executable, "-c", UNWINDS], cwd=ROOT, capture_output=True, text=True, timeout=30)

    assert "cleanup ran" in result.stdout
    assert "not interrupted" not in result.stdout
    assert "KeyboardInterrupt" in result.stderr


def test_without_it_a_term_signal_skips_the_cleanup() -> None:
    script = UNWINDS.replace("stop_on_sigterm()\n", "")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)

    assert result.returncode == -15
    assert "cleanup ran" not in result.stdout


def test_a_run_stopped_before_its_stack_started_still_writes_a_summary() -> None:
    from bench.report import summary_markdown

    summary = summary_markdown({"started": "20261202-074714", "profile": "full", "machine": "2 vCPU", "interrupted": True})

    assert "Stack: not started" in summary
    assert "**Interrupted**" in summary


def test_a_run_stopped_by_an_error_says_which_in_its_summary() -> None:
    from bench.report import summary_markdown

    summary = summary_markdown({"started": "20261208-021805", "profile": "full", "machine": "2 vCPU", "interrupted": True,
                                "error": "RuntimeError: the benchmark's PostgreSQL server did not start"})

    assert "**Interrupted** by an error (RuntimeError: the benchmark's PostgreSQL server did not start)" in summary
