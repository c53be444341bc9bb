"""The overview's server-drawn charts: escaped labels, honest gaps, round axes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from notifications.overview_series import Series
from notifications.svg_charts import _scale, lines, stacked_bars

START = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
MINUTES = [START + timedelta(minutes=i) for i in range(6)]


def test_a_hostile_vendor_name_is_text_not_markup() -> None:
    name = '<script>alert(1)</script>"'
    svg = lines(Series(MINUTES, {name: [1, 2, None, None, 3, 4]}), chart_id="c", title="t", unit="ms")

    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in svg


def test_a_minute_without_calls_breaks_the_line_instead_of_drawing_zero() -> None:
    svg = lines(Series(MINUTES, {"sms-primary": [5, 6, None, 7, None, None]}), chart_id="c", title="t", unit="ms")

    assert len(re.findall(r"<polyline", svg)) == 1  # minutes 0-1
    assert len(re.findall(r"<circle", svg)) == 1  # minute 3 alone


def test_stacked_bars_stack_in_legend_order_and_skip_empty_minutes() -> None:
    svg = stacked_bars(Series(MINUTES, {"paid": [0, 3, 0, 0, 0, 1], "payment_failed": [0, 1, 0, 0, 0, 0]}), chart_id="c", title="t", unit="/min")

    assert re.findall(r"<title>(\d\d:\d\d [a-z_]+: \d+)</title>", svg) == ["21:01 paid: 3", "21:01 payment_failed: 1", "21:05 paid: 1"]
    assert ">5</text>" in svg  # 4 at most per minute: a 0-5 axis


@pytest.mark.parametrize(("peak", "top"), [(0, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (11, 20), (23, 50), (150, 200), (1234, 2000)])
def test_the_axis_ends_at_a_round_number_above_the_peak(peak: float, top: float) -> None:
    assert _scale(peak) == top
