"""Sandboxed template rendering (Jinja2's immutable sandbox).

Templates are written by operators and filled with customer-supplied data, so they run in
Jinja2's ImmutableSandboxedEnvironment: no attribute starting with `_`, no method that
mutates, no access to settings or modules; the context holds plain JSON data only. HTML
bodies autoescape, so `<script>` in a customer's name arrives as text.

Amounts go through the `money` filter, `{{ total|money(currency) }}`: the customer's locale
(the `locale` the template is rendered for) decides how they read (`R$ 19,00`, `$12,345.67`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from money.formatting import money_format

# Compiled templates kept per process, keyed by their source: a new version compiles anew.
COMPILED_TEMPLATE_CACHE_SIZE = 512

_plain_env = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
_html_env = ImmutableSandboxedEnvironment(autoescape=True)


@pass_context
def _money_filter(context: Context, amount: object, currency: object) -> str:
    """`{{ total|money(currency) }}` in the locale the template is rendered for."""
    return money_format(str(amount), str(currency), str(context.get("locale") or "en"))


for _env in (_plain_env, _html_env):
    _env.filters["money"] = _money_filter


class TemplateRenderError(Exception):
    """A template failed to render (a sandbox violation or a runtime error): permanent."""


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=COMPILED_TEMPLATE_CACHE_SIZE)
def _compiled(source: str, html: bool):
    return (_html_env if html else _plain_env).from_string(source)


def template_syntax_errors(*, subject: str, body_text: str, body_html: str) -> dict[str, str]:
    """Field -> readable error with its line number; empty when every field parses."""
    errors: dict[str, str] = {}
    for field, source, html in (("subject", subject, False), ("body_text", body_text, False), ("body_html", body_html, True)):
        try:
            (_html_env if html else _plain_env).parse(source)
        except TemplateSyntaxError as exc:
            errors[field] = f"Line {exc.lineno}: {exc.message}"
    return errors


def template_render(
    *, subject: str, body_text: str, body_html: str, context: dict[str, Any], locale: str = "en"
) -> RenderedMessage:
    """Render the three parts with `context` for a reader of `locale` (also the template's
    `locale` variable); raises TemplateRenderError."""
    context = {**context, "locale": locale}
    try:
        return RenderedMessage(
            subject=" ".join(_compiled(subject, False).render(context).split()) if subject else "",
            text=_compiled(body_text, False).render(context),
            html=_compiled(body_html, True).render(context) if body_html else "",
        )
    except SecurityError as exc:
        raise TemplateRenderError(f"Template tried something the sandbox forbids: {exc}") from exc
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"Template syntax error on line {exc.lineno}: {exc.message}") from exc
    except Exception as exc:
        raise TemplateRenderError(f"Template failed to render: {type(exc).__name__}: {exc}") from exc
