"""`.env`: a development convenience that must never weaken a deployed process.

`make run` writes a `.env` with DEBUG=true and a throw-away SECRET_KEY. Left behind in a
directory that production runs from, it would silently turn off the HTTPS redirect, secure
cookies and HSTS. So it is read only by a development process:

- a process whose real environment sets SECRET_KEY, or sets DEBUG to false, is deployed (or a
  test run, which runs as production does): its `.env` is not read, and a warning says so when
  that file would have turned DEBUG on;
- `BEACON_DEVELOPMENT=true` in the real environment reads it anyway (a developer who exports
  SECRET_KEY in their shell);
- otherwise it is read, and real environment variables still win over its values.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path

import environ

_TRUE = {"1", "true", "yes", "on"}
_DEBUG_ON = re.compile(r"""^\s*(?:export\s+)?DEBUG\s*=\s*['"]?(?:1|true|yes|on)['"]?\s*$""", re.IGNORECASE | re.MULTILINE)


def env_file_is_for_this_process(environment: MutableMapping[str, str]) -> bool:
    """False when the real environment shows a deployed process (see the module's rules)."""
    if environment.get("BEACON_DEVELOPMENT", "").strip().lower() in _TRUE:
        return True
    debug = environment.get("DEBUG")
    explicitly_off = debug is not None and debug.strip().lower() not in _TRUE
    return not ("SECRET_KEY" in environment or explicitly_off)


def env_file_read(path: Path) -> str:
    """Load `path` into os.environ when this is a development process; real variables win.
    Returns "read", "absent" or "ignored"."""
    if not path.is_file():
        return "absent"
    if not env_file_is_for_this_process(os.environ):
        if _DEBUG_ON.search(path.read_text(errors="replace")):
            sys.stderr.write(
                f"Beacon: ignoring {path} (it sets DEBUG=true) because the environment sets SECRET_KEY or "
                "DEBUG=false, as a deployed process does; set BEACON_DEVELOPMENT=true to read it anyway.\n"
            )
        return "ignored"
    environ.Env.read_env(path, overwrite=False)
    return "read"
