"""The notifications app's public door: what other apps may call.

`checkout` calls `trigger_publish` inside its transaction; nothing else crosses over.
"""

from __future__ import annotations

from notifications.outbox import trigger_publish

__all__ = ["trigger_publish"]
