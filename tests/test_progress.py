"""The command line's progress bar: what it draws, how often, and when it stays silent."""

from __future__ import annotations

import io

from ml_dash.cli.progress import ProgressBar


def test_the_bar_fills_with_the_rows_sent_and_clamps_at_the_total() -> None:
    bar = ProgressBar("[1/2] a/b/c", 1000, stream=io.StringIO(), enabled=True, width=10)
    assert bar.render(0) == "[1/2] a/b/c \u2595" + "\u00b7" * 10 + "\u258f 0/1,000 rows   0%"
    assert bar.render(500) == "[1/2] a/b/c \u2595" + "\u2588" * 5 + "\u00b7" * 5 + "\u258f 500/1,000 rows  50%"
    assert bar.render(5000) == bar.render(1000) and bar.render(1000).endswith("1,000/1,000 rows 100%")
    assert ProgressBar("x", 0, stream=io.StringIO(), enabled=True).render(0).endswith("0/0 rows 100%")


def test_updates_redraw_in_place_rate_limited_but_always_show_the_end() -> None:
    out = io.StringIO()
    now = [0.5]  # a monotonic clock just after boot: the first draw must not wait for it to pass the interval
    bar = ProgressBar("run", 100, stream=out, enabled=True, width=4, min_interval_s=3600, clock=lambda: now[0])
    bar.update(10)
    bar.update(20)  # within the interval: skipped
    now[0] += 3600
    bar.update(30)  # the interval passed
    bar.update(100)  # the last one is always drawn
    bar.close()
    assert out.getvalue() == "\r" + bar.render(10) + "\r" + bar.render(30) + "\r" + bar.render(100) + "\n"


def test_nothing_is_drawn_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()  # isatty() is False
    bar = ProgressBar("run", 100, stream=out)
    bar.update(100)
    bar.close()
    assert out.getvalue() == ""
