"""Links from a notification to the record its trigger is about, in the operator's admin.

A trigger names its subject as `<kind>:<id>` (`order:3f2b…`). The app that owns that kind of
record registers how to link to it (checkout/admin.py registers "order"), so notifications'
admin names no other app's admin URLs; a kind nobody registered is shown as its plain text.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q
from django.utils.html import format_html

# Characters of a subject's id shown as the link's text (a UUID's first block).
SUBJECT_ID_SHOWN = 8
# The shortest id prefix a search looks subjects up by (shorter ones match too much).
SUBJECT_SEARCH_MIN_CHARS = 4

_subject_urls: dict[str, Callable[[str], str]] = {}


def subject_link_register(*, kind: str, url_for: Callable[[str], str]) -> None:
    """Link subjects `<kind>:<id>` to `url_for(id)`; registering a kind again replaces its link."""
    _subject_urls[kind] = url_for


def subject_link(subject_ref: str) -> str:
    """The subject as an HTML link when its kind is registered, else its text ("—" for none)."""
    kind, _, subject_id = subject_ref.partition(":")
    url_for = _subject_urls.get(kind)
    if url_for is None or not subject_id:
        return subject_ref or "—"
    return format_html('<a href="{}">{}</a>', url_for(subject_id), subject_id[:SUBJECT_ID_SHOWN])


def subject_search(term: str, *, field: str = "trigger__subject_ref") -> Q:
    """Notifications whose subject, of a registered kind, has an id starting with `term`
    (written with or without its `<kind>:` prefix); matches nothing for a shorter term."""
    found = Q(pk__in=[])
    for kind in _subject_urls:
        subject_id = term.removeprefix(f"{kind}:")
        if len(subject_id) >= SUBJECT_SEARCH_MIN_CHARS:
            found |= Q(**{f"{field}__istartswith": f"{kind}:{subject_id}"})
    return found
