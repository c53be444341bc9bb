"""The template sandbox with the render budget wired in (the checks live in render_budget.py).

Jinja2's ImmutableSandboxedEnvironment already refuses `_` attributes, mutating methods and
`range` over 100,000; this subclass adds the budget at every place a template can spend time
or memory: a parse-time rewrite makes every `{% for %}` iterable, every output and every `~`
pass through the budget, and the sandbox's own hooks (intercepted operators, `call`,
`str.format`) and every filter check it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifications.render_budget import (
    MAX_CALL_DEPTH,
    RenderBudgetExceeded,
    binop_precheck,
    budget_active,
    budgeted_filter,
    method_precheck,
    str_format_estimate,
    value_weight,
)


def _iterate(iterable: Iterable) -> Iterator:
    budget = budget_active()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.iteration()
        yield item


def _budget_internal(function: Callable) -> Callable:
    function.budget_internal = True  # type: ignore[attr-defined]
    return function


class BudgetedSandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with the render budget of the render in progress enforced."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # lipsum(n, min, max) writes as many words as asked: no place in a notification.
        self.globals.pop("lipsum", None)
        self.filters = {name: budgeted_filter(name, function) for name, function in self.filters.items()}

    # Parse-time rewrite: every loop iterable, output and `~` goes through the budget.
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = self._budget_call("budget_iterate", loop.iter)
        for output in tree.find_all(nodes.Output):
            output.nodes = self._budgeted_output(output.nodes)
        self._concat_rewrite(tree)
        return tree

    def _budget_call(self, attribute: str, *args: nodes.Expr) -> nodes.Call:
        node = nodes.Call(nodes.EnvironmentAttribute(attribute), list(args), [], None, None)
        return node.set_lineno(args[0].lineno if args and args[0].lineno else 1).set_environment(self)

    def _budgeted_output(self, children: list[nodes.Expr]) -> list[nodes.Expr]:
        """Expressions are counted as they are output; the literal text of the node at once."""
        literal = sum(len(child.data) for child in children if isinstance(child, nodes.TemplateData))
        counted: list[nodes.Expr] = [self._budget_call("budget_emit_literal", nodes.Const(literal))] if literal else []
        for child in children:
            counted.append(child if isinstance(child, nodes.TemplateData) else self._budget_call("budget_emit", child))
        return counted

    def _concat_rewrite(self, parent: nodes.Node) -> None:
        """`a ~ b ~ c` joins all its parts at once; make it pairs, each measured before the next
        (children first, so a Concat inside a part is rewritten before its parent is)."""
        for child in parent.iter_child_nodes():
            self._concat_rewrite(child)
        for field_name, value in parent.iter_fields():
            if isinstance(value, nodes.Concat):
                setattr(parent, field_name, self._concat_pairs(value))
            elif isinstance(value, list):
                setattr(parent, field_name, [self._concat_pairs(item) if isinstance(item, nodes.Concat) else item for item in value])

    def _concat_pairs(self, concat: nodes.Concat) -> nodes.Expr:
        parts = concat.nodes
        joined = self._budget_call("budget_value", nodes.Concat(parts[:1], lineno=concat.lineno))
        for part in parts[1:]:
            joined = self._budget_call("budget_value", nodes.Concat([joined, part], lineno=concat.lineno))
        return joined

    @_budget_internal
    def budget_iterate(self, iterable: Iterable) -> Iterator:
        return _iterate(iterable)

    @_budget_internal
    def budget_emit(self, value: Any) -> Any:
        budget = budget_active()
        if budget is not None:
            budget.tick()
            budget.emit(value_weight(value, budget.max_chars))
        return value

    @_budget_internal
    def budget_emit_literal(self, size: int) -> str:
        budget = budget_active()
        if budget is not None:
            budget.emit(size)
        return ""

    @_budget_internal
    def budget_value(self, value: Any) -> Any:
        budget = budget_active()
        return value if budget is None else budget.check_value(value, "joining with ~")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = budget_active()
        if budget is None:
            return super().call_binop(context, operator, left, right)
        budget.tick()
        binop_precheck(budget, operator, left, right)
        return budget.check_value(super().call_binop(context, operator, left, right), f"the {operator} operator")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        template = value.__self__

        def budgeted_format(*args: Any, **kwargs: Any) -> str:
            budget = budget_active()
            if budget is not None:
                mapping = args[0] if value.__name__ == "format_map" and args else kwargs
                budget.refuse_larger(str_format_estimate(template, args, mapping, budget.max_chars), f"str.{value.__name__}")
            return formatter(*args, **kwargs)

        return budgeted_format

    # Jinja's own signature: the double underscores keep a template's keyword arguments apart.
    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "budget_internal", False):
            return __context.call(__obj, *args, **kwargs)
        budget = budget_active()
        if budget is None:
            return super().call(__context, __obj, *args, **kwargs)
        budget.tick()
        args = method_precheck(budget, __obj, args, kwargs)
        if budget.depth >= MAX_CALL_DEPTH:
            raise RenderBudgetExceeded(f"calls nested more than {MAX_CALL_DEPTH} deep (a recursive macro?)")
        budget.depth += 1
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return budget.check_value(result, "a call")
