"""The render budget: time and size limits enforced inside Jinja2's sandbox, by the render itself.

Operators write templates and customers fill them, so a template is untrusted code. Celery's
time limits do not help (a threads pool never enforces them, and the admin preview runs in
gunicorn), so the limits live where the work happens: `BudgetedSandboxEnvironment` checks the
budget of the render in progress at every point where a template can spend time or memory.

- **Time**: the deadline is checked at every loop iteration (every `{% for %}` iterable is
  wrapped at parse time), every call (functions, methods, macros, `loop(...)`, blocks), every
  filter, every intercepted operator and every output. The time is the CPU time of the
  rendering thread: a template can only spend CPU (it can neither sleep nor wait on I/O), and a
  busy machine that holds the thread up must not fail a good template permanently. The cheap
  wall clock is read first; the thread's CPU clock only once the wall clock has run out (a
  thread's CPU time never passes its wall time).
- **Output**: every character a template produces counts, including output that is captured
  rather than returned (`{% set %}` blocks, macro bodies, `{% filter %}` and `{% call %}`
  blocks); past the limit the render stops before the text is joined.
- **Values**: no value a template builds may be larger (roughly: printed) than the output
  limit. Operations whose result size is a product of their inputs are refused *before* they
  allocate: `*` (strings, lists, integers), `**`, `%` formatting, `str.format` widths and
  repeated fields, and the filters and methods that grow text (`center`, `indent`, `wordwrap`,
  `format`, `join`, `replace`, `batch`, `slice`, `urlize`, `tojson`, `ljust`, `zfill`, ...).
  Every other result is measured right after it is made, so nothing can keep doubling.
- **Depth**: calls nest at most MAX_CALL_DEPTH deep (recursive macros end with a clear error,
  not a RecursionError).

This module holds the budget and the checks; render_sandbox.py wires them into the sandbox.
The budget of the render in progress lives in a ContextVar set by `render_budget_open`
(rendering.template_render is the only caller). Outside one (compile-time constant folding)
checks are skipped; growth filters are marked `pass_context`, which Jinja never folds.
"""

from __future__ import annotations

import inspect
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.utils import Namespace, _PassArg

# Calls (macros, recursive loops, blocks) nested deeper than this stop the render.
MAX_CALL_DEPTH = 64
# Integers a template builds stay below this many bits (Python refuses to print past ~14,000).
MAX_INT_BITS = 65_536
# The deadline is read every this many loop iterations (time.monotonic is cheap, not free).
ITERATIONS_PER_CLOCK_CHECK = 64


class RenderBudgetExceeded(Exception):
    """The render went over its budget (time, output, value size or depth); permanent."""


@dataclass
class RenderBudget:
    """The limits of one render and what it has used so far. Not shared between threads."""

    time_limit: float
    max_chars: int
    deadline: float = field(init=False)
    cpu_deadline: float = field(init=False)
    emitted: int = 0
    depth: int = 0
    _iterations: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.time_limit
        self.cpu_deadline = time.thread_time() + self.time_limit

    def tick(self) -> None:
        """Stop the render once it has spent its time (CPU time of this thread)."""
        if time.monotonic() > self.deadline and time.thread_time() > self.cpu_deadline:
            raise RenderBudgetExceeded(f"rendering took longer than {self.time_limit:g} s")

    def iteration(self) -> None:
        self._iterations += 1
        if self._iterations % ITERATIONS_PER_CLOCK_CHECK == 0:
            self.tick()

    def emit(self, size: int) -> None:
        self.emitted += size
        if self.emitted > self.max_chars:
            raise RenderBudgetExceeded(f"the template produced more than {self.max_chars:,} characters")

    def refuse_larger(self, estimate: float, what: str) -> None:
        """Refuse, before it allocates, an operation whose result would be about `estimate` characters."""
        if estimate > self.max_chars:
            raise RenderBudgetExceeded(f"{what} would make about {_approx(estimate)} characters (limit {self.max_chars:,})")

    def check_value(self, value: Any, what: str) -> Any:
        """Return `value` if its printed size is within the limit; raise otherwise."""
        if value_weight(value, self.max_chars) > self.max_chars:
            raise RenderBudgetExceeded(f"{what} made a value larger than {self.max_chars:,} characters")
        return value


def _approx(number: float) -> str:
    return f"{number:,.0f}" if number < 1e15 else f"{number:.1e}"


_active: ContextVar[RenderBudget | None] = ContextVar("beacon_render_budget", default=None)


def budget_active() -> RenderBudget | None:
    """The budget of the render running in this thread (None outside one: compile time)."""
    return _active.get()


@contextmanager
def render_budget_open(*, time_limit: float, max_chars: int) -> Iterator[RenderBudget]:
    """Run a render under a fresh budget (one per notification, or per preview)."""
    budget = RenderBudget(time_limit=time_limit, max_chars=max_chars)
    token = _active.set(budget)
    try:
        yield budget
    finally:
        _active.reset(token)


def value_weight(value: Any, limit: int) -> int:
    """About how many characters `value` prints as; stops counting once past `limit`.

    Containers count their items (shared references count each time they would print), so
    `[big] * 1000` weighs a thousand `big`s, as its printout would.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        else:
            total += 24  # numbers, ranges, generators, macros: short printouts
        if total > limit:
            return total
    return total


# --- operators --------------------------------------------------------------------------------

# `%s`, `%(name)-10.3f`, `%*d`: flags, width and precision of one printf-style conversion.
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_DIGITS = re.compile(r"\d+")


def _printf_estimate(fmt: str | bytes, args: Any, limit: int) -> float:
    """Upper bound of the size of `fmt % args` (raises for `*` widths, whose size hides in the data)."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    fields, widest = 0, 0
    for width, precision, _ in _PRINTF_SPEC.findall(text):
        if "*" in (width, precision):
            raise RenderBudgetExceeded("a '*' width or precision in a format string is not allowed in templates")
        fields += 1
        widest = max(widest, int(width or 0), int(precision or 0))
    return len(text) + fields * (value_weight(args, limit) + widest)


def str_format_estimate(fmt: str, args: tuple, kwargs: dict, limit: int) -> float:
    """Upper bound of the size of `fmt.format(*args, **kwargs)`; nested fields are refused."""
    fields, widest = 0, 0
    for _, field_name, spec, _ in string.Formatter().parse(fmt):
        if field_name is None:
            continue
        if spec and "{" in spec:
            raise RenderBudgetExceeded("nested fields in a format specification are not allowed in templates")
        fields += 1
        widest = max([widest, *(int(number) for number in _DIGITS.findall(spec or ""))])
    return len(fmt) + fields * (value_weight(args, limit) + value_weight(kwargs, limit) + widest)


def binop_precheck(budget: RenderBudget, operator: str, left: Any, right: Any) -> None:
    sequence = (str, bytes, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, sequence):
            left, right = right, left
        if isinstance(left, sequence) and isinstance(right, int):
            budget.refuse_larger(value_weight(left, budget.max_chars) * max(right, 0), "repeating a value")
        elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderBudgetExceeded(f"multiplying made an integer over {MAX_INT_BITS:,} bits")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * left.bit_length() > MAX_INT_BITS:
                raise RenderBudgetExceeded(f"raising to a power made an integer over {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, (str, bytes)):
        budget.refuse_larger(_printf_estimate(left, right, budget.max_chars), "formatting with %")


# --- methods and filters that grow text -----------------------------------------------------------


def _width_estimate(text: Any, width: Any) -> float:
    return max(len(text), width if isinstance(width, int) else 0)


def _join_estimate(separator: Any, items: Any, limit: int) -> float:
    return value_weight(items, limit) + max(len(items) - 1, 0) * len(separator)


def _replace_estimate(text: Any, old: Any, new: Any, count: Any = -1) -> float:
    if not isinstance(text, (str, bytes)) or not isinstance(old, (str, bytes)) or not isinstance(new, (str, bytes)):
        return 0
    occurrences = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * len(new)


def _translate_estimate(text: Any, table: Any, limit: int) -> float:
    longest = max((value_weight(value, limit) for value in table.values()), default=0) if isinstance(table, dict) else 1
    return len(text) * max(longest, 1)


def method_precheck(budget: RenderBudget, method: Any, args: tuple, kwargs: dict) -> tuple:
    """Refuse a call of a growing `str`/`bytes` method whose result would exceed the budget.
    Returns the arguments to call it with (an iterable to join is read here, under the budget)."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if not isinstance(owner, (str, bytes)):
        return args
    limit = budget.max_chars
    if name in ("center", "ljust", "rjust", "zfill") and args:
        budget.refuse_larger(_width_estimate(owner, args[0]), f"str.{name}")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        budget.refuse_larger(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * max(tabsize, 0), "str.expandtabs")
    elif name == "join" and args:
        items = budget_list(budget, args[0])
        budget.refuse_larger(_join_estimate(owner, items, limit), "str.join")
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        budget.refuse_larger(_replace_estimate(owner, *args[:3]), "str.replace")
    elif name == "translate" and args:
        budget.refuse_larger(_translate_estimate(owner, args[0], limit), "str.translate")
    return args


def budget_list(budget: RenderBudget, iterable: Iterable) -> list:
    """`list(iterable)`, reading it under the budget: the clock, and at most max_chars items."""
    if isinstance(iterable, (list, tuple, str, dict)):
        return list(iterable)
    items = []
    for item in iterable:
        budget.iteration()
        items.append(item)
        if len(items) > budget.max_chars:
            raise RenderBudgetExceeded(f"a sequence of more than {budget.max_chars:,} items")
    return items


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _filter_precheck(budget: RenderBudget, name: str, arguments: dict[str, Any]) -> None:
    """Refuse a growing filter's call before it allocates (`arguments` are bound by name)."""
    limit = budget.max_chars
    value = arguments.get("value", arguments.get("s"))
    if name == "center":
        budget.refuse_larger(_width_estimate(value or "", arguments.get("width", 80)), "the center filter")
    elif name == "indent" and isinstance(value, str):
        width = arguments.get("width", 4)
        per_line = len(width) if isinstance(width, str) else _int_or_zero(width)
        budget.refuse_larger(len(value) + (value.count("\n") + 1) * per_line, "the indent filter")
    elif name == "wordwrap" and isinstance(value, str):
        lines = len(value) // max(_int_or_zero(arguments.get("width", 79)), 1) + value.count("\n") + 1
        budget.refuse_larger(len(value) + lines * len(arguments.get("wrapstring") or "\n"), "the wordwrap filter")
    elif name == "format" and isinstance(value, str):
        budget.refuse_larger(_printf_estimate(value, (arguments.get("args"), arguments.get("kwargs")), limit), "the format filter")
    elif name == "replace":
        budget.refuse_larger(_replace_estimate(value, arguments.get("old"), arguments.get("new"), arguments.get("count")), "the replace filter")
    elif name == "batch" and arguments.get("fill_with") is not None:
        budget.refuse_larger(_int_or_zero(arguments.get("linecount")), "the batch filter")
    elif name == "slice":
        budget.refuse_larger(2 * _int_or_zero(arguments.get("slices")), "the slice filter")
    elif name == "urlize" and isinstance(value, str):
        extra = sum(len(arguments.get(key) or "") for key in ("target", "rel")) + 64
        budget.refuse_larger(4 * len(value) + (len(value.split()) + 1) * extra, "the urlize filter")
    elif name == "tojson":
        indent = arguments.get("indent")
        if (len(indent) if isinstance(indent, str) else _int_or_zero(indent)) > 8:
            raise RenderBudgetExceeded("the tojson filter indents by at most 8 in templates")
    elif name == "join":
        budget.refuse_larger(_join_estimate(str(arguments.get("d", "")), value, limit), "the join filter")
    elif name == "sum":
        start = arguments.get("start", 0)
        if not isinstance(start, (int, float)):  # sequences: each step copies what it has so far
            budget.refuse_larger(value_weight(start, limit) + value_weight(arguments.get("iterable"), limit), "the sum filter")


# Filters that read a whole iterable: it is read under the budget first (time and item count).
_ITERABLE_FILTERS = frozenset({"join", "list", "sum", "sort", "unique", "reverse", "min", "max", "groupby", "dictsort", "count", "length"})
# Filters whose arguments decide how large their result is.
_GROWING_FILTERS = frozenset(
    {"center", "indent", "wordwrap", "format", "replace", "batch", "slice", "urlize", "tojson", "join", "sum"}
)


def budgeted_filter(name: str, function: Callable) -> Callable:
    """Wrap a filter: clock, input read under the budget, growth refused before, size after.

    Marked pass_context, so Jinja never runs it at compile time (constant folding), where no
    budget is active; the wrapped filter still gets the argument it asked for.
    """
    pass_arg = _PassArg.from_obj(function)
    signature = inspect.signature(function)
    # Jinja's async-aware filters ask for the eval context without naming it in the signature.
    names_leading = next(iter(signature.parameters), "") in ("context", "eval_ctx", "environment")

    @pass_context
    def budgeted(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _active.get()
        if pass_arg is _PassArg.context:
            leading: tuple = (context,)
        elif pass_arg is _PassArg.eval_context:
            leading = (context.eval_ctx,)
        elif pass_arg is _PassArg.environment:
            leading = (context.environment,)
        else:
            leading = ()
        if budget is None:
            return function(*leading, value, *args, **kwargs)
        budget.tick()
        if name in _ITERABLE_FILTERS and not isinstance(value, (str, dict)):
            value = budget_list(budget, value)
        if name in _GROWING_FILTERS:
            bound = signature.bind_partial(*(leading if names_leading else ()), value, *args, **kwargs)
            _filter_precheck(budget, name, bound.arguments)
        return budget.check_value(function(*leading, value, *args, **kwargs), f"the {name} filter")

    return budgeted
