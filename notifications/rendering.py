"""Sandboxed template rendering (Jinja2's immutable sandbox).

Templates are written by operators and filled with customer-supplied data, so they run in
Jinja2's ImmutableSandboxedEnvironment: no attribute starting with `_`, no method that
mutates, no access to settings or modules; the context holds plain JSON data only. HTML
bodies autoescape, so `<script>` in a customer's name arrives as text. Every render runs
under a budget of time and size (TEMPLATE_RENDER_TIME_LIMIT, TEMPLATE_RENDER_MAX_CHARS)
enforced inside the sandbox itself (render_budget.py), in workers and the admin alike.

Amounts go through the `money` filter, `{{ total|money(currency) }}`: the customer's locale
(the `locale` the template is rendered for) decides how they read (`R$ 19,00`, `$12,345.67`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from jinja2 import TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SecurityError

from money.formatting import money_format, money_locale_load
from notifications.render_budget import RenderBudgetExceeded, budgeted_filter, render_budget_open
from notifications.render_sandbox import BudgetedSandboxEnvironment

# Compiled templates kept per process, keyed by their source: a new version compiles anew.
COMPILED_TEMPLATE_CACHE_SIZE = 512
# Tags ({{ }} and {% %}) one part may hold: reading and compiling a template costs time by its
# tags (36,000 took 7 s) before any budget check can run. The seed templates use at most 10.
MAX_TEMPLATE_TAGS = 1000

_plain_env = BudgetedSandboxEnvironment(autoescape=False, keep_trailing_newline=False)
_html_env = BudgetedSandboxEnvironment(autoescape=True)


@pass_context
def _money_filter(context: Context, amount: object, currency: object) -> str:
    """`{{ total|money(currency) }}` in the locale the template is rendered for."""
    return money_format(str(amount), str(currency), str(context.get("locale") or "en"))


for _env in (_plain_env, _html_env):
    _env.filters["money"] = budgeted_filter("money", _money_filter)


class TemplateRenderError(Exception):
    """A template failed to render (a sandbox violation, a runtime error, or it went over its
    render budget): permanent. `part` names the field that failed, when known."""

    def __init__(self, message: str, *, part: str = "") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def template_size_problem(source: str) -> str:
    """Why `source` is too large to read or compile within a render's budget ("" if it is not).
    Checked before parsing: the length first (free), then the tags (one pass of the lexer)."""
    if len(source) > settings.TEMPLATE_SOURCE_MAX_CHARS:
        return f"The template is {len(source):,} characters long; at most {settings.TEMPLATE_SOURCE_MAX_CHARS:,} are allowed."
    try:
        tags = sum(1 for _, token, _ in _plain_env.lex(source) if token in ("variable_begin", "block_begin"))
    except TemplateSyntaxError:
        return ""  # the parser reports it, with its line
    if tags > MAX_TEMPLATE_TAGS:
        return f"The template has {tags:,} tags ({{{{ }}}} and {{% %}}); at most {MAX_TEMPLATE_TAGS:,} are allowed."
    return ""


@lru_cache(maxsize=COMPILED_TEMPLATE_CACHE_SIZE)
def _compiled(source: str, html: bool):
    problem = template_size_problem(source)  # a template stored before this check existed
    if problem:
        raise RenderBudgetExceeded(problem[0].lower() + problem[1:])
    return (_html_env if html else _plain_env).from_string(source)


def template_syntax_errors(*, subject: str, body_text: str, body_html: str) -> dict[str, str]:
    """Field -> readable error with its line number; empty when every field parses."""
    errors: dict[str, str] = {}
    for field, source, html in (("subject", subject, False), ("body_text", body_text, False), ("body_html", body_html, True)):
        problem = template_size_problem(source)
        if problem:
            errors[field] = problem
            continue
        try:
            (_html_env if html else _plain_env).parse(source)
        except TemplateSyntaxError as exc:
            errors[field] = f"Line {exc.lineno}: {exc.message}"
        except RecursionError:  # Jinja's parser recurses about a dozen frames per nesting level
            errors[field] = "The template nests too deeply to be read (brackets, parentheses or blocks)."
    return errors


def template_render(
    *, subject: str, body_text: str, body_html: str, context: dict[str, Any], locale: str = "en"
) -> RenderedMessage:
    """Render the three parts with `context` for a reader of `locale` (also the templates'
    `locale` variable, which the `money` filter reads), under one render budget; raises
    TemplateRenderError (naming the part, and for a budget overrun what ran over) for anything
    that goes wrong."""
    context = {**context, "locale": locale}
    part = "subject"
    try:
        # Before the clock starts: what a busy process pays once, not what the template spends
        # (compiling is bounded by the source's size and tags; the locale's CLDR data loads once).
        money_locale_load(locale)
        compiled = {}
        for part, source, html in (("subject", subject, False), ("body_text", body_text, False), ("body_html", body_html, True)):
            compiled[part] = _compiled(source, html) if source or part == "body_text" else None
        with render_budget_open(time_limit=settings.TEMPLATE_RENDER_TIME_LIMIT, max_chars=settings.TEMPLATE_RENDER_MAX_CHARS):
            part = "subject"
            subject_text = " ".join(compiled["subject"].render(context).split()) if compiled["subject"] else ""
            part = "body_text"
            text = compiled["body_text"].render(context)
            part = "body_html"
            html = compiled["body_html"].render(context) if compiled["body_html"] else ""
        return RenderedMessage(subject=subject_text, text=text, html=html)
    except RenderBudgetExceeded as exc:
        raise TemplateRenderError(f"Template {part} exceeded the render budget: {exc}", part=part) from exc
    except RecursionError as exc:
        raise TemplateRenderError(f"Template {part} exceeded the render budget: it nests too deeply", part=part) from exc
    except SecurityError as exc:
        raise TemplateRenderError(f"Template tried something the sandbox forbids: {exc}", part=part) from exc
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"Template syntax error on line {exc.lineno}: {exc.message}", part=part) from exc
    except Exception as exc:
        raise TemplateRenderError(f"Template failed to render: {type(exc).__name__}: {exc}", part=part) from exc


def template_problems(*, subject: str, body_text: str, body_html: str, sample: dict[str, Any]) -> dict[str, str]:
    """Field -> why the template cannot be saved: a syntax error (with its line), else a render of
    `sample` that fails or goes over the render budget. Empty when the template is fine."""
    errors = template_syntax_errors(subject=subject, body_text=body_text, body_html=body_html)
    if errors:
        return errors
    try:
        template_render(subject=subject, body_text=body_text, body_html=body_html, context=sample)
    except TemplateRenderError as exc:
        return {exc.part or "body_text": f"With the sample data: {exc}"}
    return {}
