"""The scenario runner of the fault suites: `make chaos` (chaos/run.py) and `make cluster-test`
(cluster/run.py, on several hosts).

It starts the suite's stack, plays the scenarios in order on it (a scenario that raises fails
with the exception as its check; a process that died outside a planned kill fails the scenario
and is started again), stops every process on the way out (on failure, Ctrl-C and SIGTERM too),
and writes `<out>/summary.md` and `<out>/summary.json`.

The console ends with what a CI log's tail must show: the process logs (when anything failed),
then the summary table, every failed check and the one-line verdict (or why the stack could not
start). That last block is also written to `<out>/summary.txt`, for a caller that has more to
print before it (cluster/run.py tears the network down first).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.scenarios.common import Chaos, ScenarioResult
    from harness.stack import Stack

# Exit statuses of a suite run.
EXIT_PASSED, EXIT_FAILED, EXIT_NOT_STARTED = 0, 1, 2


@dataclass(frozen=True)
class Suite:
    """What differs between the fault suites."""

    label: str  # the prefix of the suite's console lines: "chaos", "cluster"
    title: str  # the summary's heading
    intro: str  # the summary's sentence on where the counts come from
    table: Callable[[list[ScenarioResult]], str]
    # Scenario number -> the function that plays it on a `Chaos` handle and returns its result.
    scenarios: Callable[[], dict[int, Callable[[Chaos], ScenarioResult]]]
    scenario_name: Callable[[Callable], str]


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def suite_run(suite: Suite, stack: Stack, *, start: Callable[[], str], only: str, out: Path, started: float,
              last_block_print: bool = True) -> int:
    """Run the suite on `stack`; `start()` brings the stack up and returns the load's API key.

    Returns EXIT_PASSED, EXIT_FAILED (a scenario failed, or none ran) or EXIT_NOT_STARTED.
    `last_block_print=False`: the last block only goes to `<out>/summary.txt`.
    """
    out.mkdir(parents=True, exist_ok=True)
    last_block = out / "summary.txt"
    last_block.unlink(missing_ok=True)

    def finish(text: str, status: int) -> int:
        last_block.write_text(text)
        if last_block_print:
            print(text, end="", flush=True)
        return status

    # SIGTERM (CI timeout) runs the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    results: list[ScenarioResult] = []
    try:
        stack.runner_environ()
        import django

        django.setup()
        from chaos.scenarios.common import Chaos

        try:
            api_key = start()
        except Exception:
            failure = traceback.format_exc()
            stack.log_tails_print()
            return finish(f"\n{suite.label}: the stack could not start:\n{failure}", EXIT_NOT_STARTED)
        chaos = Chaos(stack, api_key)
        wanted = {int(n) for n in only.split(",") if n.strip()}
        for number, scenario in suite.scenarios().items():
            if not wanted or number in wanted:
                results.append(_scenario_play(suite, stack, chaos, number, scenario))
    except KeyboardInterrupt:
        print(f"{suite.label}: interrupted", file=sys.stderr, flush=True)
    finally:
        stack.stop()
    rendered = summary_write(suite, results, out, started)
    passed = bool(results) and all(r.passed for r in results)
    if not passed:
        stack.log_tails_print()
    # Last, so that the tail of a CI log shows what failed.
    verdict = (f"{suite.label}: {sum(r.passed for r in results)}/{len(results)} scenarios passed in "
               f"{time.time() - started:.0f}s; summary in {out / 'summary.md'}\n")
    return finish("\n" + rendered + failed_checks(results) + verdict, EXIT_PASSED if passed else EXIT_FAILED)


def _scenario_play(suite: Suite, stack: Stack, chaos: Chaos, number: int, scenario: Callable) -> ScenarioResult:
    from chaos.scenarios.common import ScenarioResult

    name = suite.scenario_name(scenario)
    print(f"\n== scenario {number}: {name}", flush=True)
    scenario_started = time.monotonic()
    try:
        result = scenario(chaos)
    except Exception as exc:
        traceback.print_exc()
        result = ScenarioResult(number, name)
        result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - scenario_started
    _keep_alive(stack, result)
    print(f"== scenario {number}: {'PASS' if result.passed else 'FAIL'} in {result.seconds:.0f}s", flush=True)
    return result


def _keep_alive(stack: Stack, result: ScenarioResult) -> None:
    """A process that died outside a planned kill is a finding: say so and start it again."""
    for name, alive in stack.processes_alive().items():
        if not alive:
            result.check(f"{name} still running after the scenario", False, stack.processes[name].log_tail(5))
            stack.process_restart(name)


def failed_checks(results: list[ScenarioResult]) -> str:
    """One line per failed check, under its scenario ("" when every check passed)."""
    lines = [
        f"FAIL scenario {r.number} ({r.name}): {c.what}{': ' + c.detail if c.detail else ''}"
        for r in results for c in r.checks if not c.ok
    ]
    lines += [f"FAIL scenario {r.number} ({r.name}): no check ran" for r in results if not r.checks]
    return "\n".join(["Failed checks:", *lines, ""]) if lines else ""


def summary_write(suite: Suite, results: list[ScenarioResult], out: Path, started: float) -> str:
    """`<out>/summary.md` (the table, then each scenario's checks and notes) and `summary.json`;
    returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    rendered = suite.table(results)
    lines = [
        suite.title, "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {time.time() - started:.0f} s in total. "
        + suite.intro, "", rendered,
    ]
    for r in results:
        lines.append(f"## {r.number}. {r.name} — {'PASS' if r.passed else 'FAIL'} ({r.seconds:.0f} s)\n")
        lines += [f"- [{'x' if c.ok else ' '}] {c.what}{': ' + c.detail if c.detail else ''}" for c in r.checks]
        lines += [f"- note: {note}" for note in r.notes]
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return rendered
