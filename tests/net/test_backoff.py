"""Retry waits: full-jitter exponential backoff, ``Retry-After`` in both forms, the cap."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from curate.net.backoff import retry_after_seconds, retry_delay

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 3 ", 3.0),
    ("0", 0.0),
    (formatdate(NOW + 45, usegmt=True), 45.0),
    (formatdate(NOW - 45, usegmt=True), 0.0),  # a date in the past: go now
    ("-5", None),
    ("1.5", None),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_retry_after_seconds(value, seconds) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    rng = random.Random(0)
    assert retry_delay(0, backoff=0.5, cap=30, retry_after=7.0, rng=rng) == 7.0
    assert retry_delay(3, backoff=0.5, cap=30, retry_after=3600.0, rng=rng) == 30.0


def test_backoff_is_jittered_and_doubles_up_to_the_cap() -> None:
    rng = random.Random(0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)]:
        waits = [retry_delay(attempt, backoff=0.5, cap=30, retry_after=None, rng=rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        assert max(waits) > 0.8 * ceiling and min(waits) < 0.2 * ceiling  # spread over the whole range
