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

from jinja2 import nodes, pass_context
from jinja2.runtime import Context, LoopContext
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

# The filters the parse-time rewrite inserts (a template naming them only counts more).
BUDGET_ITERATE, BUDGET_EMIT, BUDGET_EMIT_LITERAL, BUDGET_VALUE = "_budget_iterate", "_budget_emit", "_budget_emit_literal", "_budget_value"


def _iterate(iterable: Iterable) -> Iterator:
    budget = budget_active()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.iteration()
        yield item


@pass_context
def budget_iterate(context: Context, iterable: Iterable) -> Iterator:
    """Every `{% for %}` iterable: the clock is read as the loop goes."""
    return _iterate(iterable)


@pass_context
def budget_emit(context: Context, value: Any) -> Any:
    """Every `{{ ... }}` output, counted before it joins the text (captured output included).
    The hottest check of a render: plain strings take the short way."""
    budget = budget_active()
    if budget is not None:
        budget.emit(len(value) if value.__class__ is str else value_weight(value, budget.max_chars))
        budget.tick()
    return value


@pass_context
def budget_emit_literal(context: Context, size: int) -> str:
    """The literal text of one output node, counted each time it is output."""
    budget = budget_active()
    if budget is not None:
        budget.emit(size)
    return ""


@pass_context
def budget_value(context: Context, value: Any) -> Any:
    """Every `~`, made of pairs: each pair is measured before the next is joined."""
    budget = budget_active()
    return value if budget is None else budget.check_value(value, "joining with ~")


class BudgetedSandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with the render budget of the render in progress enforced."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # lipsum(n, min, max) writes as many words as asked: no place in a notification.
        self.globals.pop("lipsum", None)
        self.filters = {name: budgeted_filter(name, function) for name, function in self.filters.items()}
        self.filters.update({
            BUDGET_ITERATE: budget_iterate, BUDGET_EMIT: budget_emit,
            BUDGET_EMIT_LITERAL: budget_emit_literal, BUDGET_VALUE: budget_value,
        })

    # Parse-time rewrite: every loop iterable, output and `~` goes through the budget.
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = self._budget_call(BUDGET_ITERATE, loop.iter)
        for output in tree.find_all(nodes.Output):
            output.nodes = self._budgeted_output(output.nodes)
        self._concat_rewrite(tree)
        return tree

    def _budget_call(self, name: str, value: nodes.Expr) -> nodes.Filter:
        """`value|<name>`: a filter is a direct call in the compiled code (a Call node would go
        through the sandbox's `call`, several times slower), and pass_context keeps it from
        being folded at compile time."""
        node = nodes.Filter(value, name, [], [], None, None)
        return node.set_lineno(value.lineno or 1).set_environment(self)

    def _budgeted_output(self, children: list[nodes.Expr]) -> list[nodes.Expr]:
        """Expressions are counted as they are output; the literal text of the node at once."""
        literal = sum(len(child.data) for child in children if isinstance(child, nodes.TemplateData))
        counted: list[nodes.Expr] = [self._budget_call(BUDGET_EMIT_LITERAL, nodes.Const(literal))] if literal else []
        for child in children:
            counted.append(child if isinstance(child, nodes.TemplateData) else self._budget_call(BUDGET_EMIT, child))
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
        joined = self._budget_call(BUDGET_VALUE, nodes.Concat(parts[:1], lineno=concat.lineno))
        for part in parts[1:]:
            joined = self._budget_call(BUDGET_VALUE, nodes.Concat([joined, part], lineno=concat.lineno))
        return joined

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
        budget = budget_active()
        if budget is None:
            return super().call(__context, __obj, *args, **kwargs)
        budget.tick()
        args = method_precheck(budget, __obj, args, kwargs)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` of a recursive loop
            args = (_iterate(args[0]), *args[1:])
        if budget.depth >= MAX_CALL_DEPTH:
            raise RenderBudgetExceeded(f"calls nested more than {MAX_CALL_DEPTH} deep (a recursive macro?)")
        budget.depth += 1
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return budget.check_value(result, "a call")
