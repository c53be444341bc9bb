"""The notifications app's public door: what other apps may call.

`checkout` calls `trigger_publish` inside its transaction (or, with `insert_with`, writes the
trigger's part in its own statement, built with `rows_insert_before`); nothing else crosses over.
"""

from __future__ import annotations

from notifications.outbox import trigger_publish
from notifications.row_inserts import Statement, rows_insert_before

__all__ = ["Statement", "rows_insert_before", "trigger_publish"]
