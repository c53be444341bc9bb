"""An email's HTML part as mail clients expect it: a complete document, not a fragment.

Operators write the body (`<p>Hi …</p>`); clients such as Outlook and Gmail, and spam filters,
expect `<!DOCTYPE html>`, `<html lang>`, a charset and a `<body>`. The language lets screen
readers pronounce the message in the customer's language.
"""

from __future__ import annotations

import re

from django.utils.html import escape

# A template that already is a whole document is sent as written.
_WHOLE_DOCUMENT = re.compile(r"<html[\s>]", re.IGNORECASE)


def email_html_document(*, body_html: str, subject: str, locale: str) -> str:
    """`body_html` inside a complete HTML document in `locale`; "" stays "" (no HTML part)."""
    if not body_html or _WHOLE_DOCUMENT.search(body_html):
        return body_html
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{escape(locale)}">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(subject)}</title>\n"
        "</head>\n"
        "<body>\n"
        f"{body_html}\n"
        "</body>\n"
        "</html>\n"
    )
