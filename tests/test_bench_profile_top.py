"""The profile summary the performance notes quote: inclusive and self shares of py-spy frames."""

from __future__ import annotations

from bench.profile_top import frame_name, profile_read

RAW = """\
process 12 "gunicorn";handle (gunicorn/workers/gthread.py:280);checkout_create (checkout/services.py:40);execute (psycopg/cursor.py:720) 6
process 12 "gunicorn";handle (gunicorn/workers/gthread.py:281);checkout_create (checkout/services.py:41) 2
process 12 "gunicorn";handle (gunicorn/workers/gthread.py:280);publish (notifications/publisher.py:90);publish (notifications/publisher.py:95) 2
a line without a count
"""


def test_shares_count_a_function_once_per_stack_whatever_its_lines() -> None:
    profile = profile_read(RAW.splitlines())

    assert profile.total == 10
    assert profile.share(profile.inclusive["handle (workers/gthread.py)"]) == 100.0
    assert profile.share(profile.inclusive["checkout_create (checkout/services.py)"]) == 80.0
    assert profile.share(profile.self_samples["checkout_create (checkout/services.py)"]) == 20.0
    assert profile.inclusive["publish (notifications/publisher.py)"] == 2  # recursion counted once
    assert profile.share(profile.self_samples["execute (psycopg/cursor.py)"]) == 60.0


def test_a_frame_name_drops_the_line_and_keeps_the_last_two_path_parts() -> None:
    assert frame_name("execute (/venv/lib/python3.11/site-packages/psycopg/cursor.py:720)") == "execute (psycopg/cursor.py)"
    assert frame_name('process 12 "gunicorn"') == 'process 12 "gunicorn"'
