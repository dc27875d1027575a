"""The time left a progress display shows: labelled, in words rounded to what a person
reads, and smoothed, so a burst or one slow answer does not make it jump."""

from __future__ import annotations

import pytest

from pipeline.cli.eta import Eta, left_words
from pipeline.cli.progress import status_line
from pipeline.engine.summary import RunStats


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (5, "under a minute"),
        (59.9, "under a minute"),
        (61, "about 1 min"),
        (9 * 60 + 20, "about 9 min"),
        (23 * 60, "about 25 min"),
        (61 * 60, "about 1 h"),
        (95 * 60, "about 1 h 40 min"),
        (26 * 3600, "about 26 h"),
    ],
)
def test_time_left_is_said_in_words_coarser_as_it_grows(seconds, words):
    assert left_words(seconds) == words


def test_no_estimate_before_the_first_item_finishes():
    eta = Eta(started=0.0)
    eta.observe(0, 10.0)
    assert eta.seconds_left(5) is None and eta.text(5) == "time left: estimating"
    eta.observe(1, 20.0)  # one item in 20 s since the start
    assert eta.seconds_left(5) == pytest.approx(100.0)
    assert eta.text(0) == ""


def test_a_burst_moves_the_estimate_a_little_not_all_the_way():
    eta = Eta(started=0.0, half_life_s=60.0)
    for second in range(1, 121):  # one item a second for two minutes
        eta.observe(second, float(second))
    steady = eta.seconds_left(600)
    assert steady == pytest.approx(600.0)
    eta.observe(170, 121.0)  # 50 items at once (a batch of answers landing together)
    after = eta.seconds_left(600)
    # The last second's rate alone would say 12 s; the smoothed rate stays within 2x.
    assert steady / 2 < after < steady


def test_a_stall_lengthens_the_estimate_gradually():
    eta = Eta(started=0.0, half_life_s=60.0)
    for second in range(1, 61):
        eta.observe(second, float(second))
    eta.observe(60, 90.0)  # nothing finished for 30 s
    assert 600 < eta.seconds_left(600) < 1200


def test_the_log_line_labels_the_time_left():
    eta = Eta(started=0.0)
    eta.observe(4, 60.0)
    line = status_line(RunStats(total=10, succeeded=4, pending=6), eta)
    assert line.endswith(", about 2 min left")
    assert "ETA" not in line
