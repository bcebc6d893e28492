"""A unit is finished exactly when its parts account for all its rows."""

from __future__ import annotations

import time

import pytest

from curate.engine.commit import UnitTracker, unit_stats
from curate.io.writers import PartRecord


def _part(unit: int, row0: int, rows: int, kept: int, drops: dict | None = None) -> PartRecord:
    return PartRecord(unit, row0, rows, kept, [f"shards/{unit:05d}-{row0:07d}.tar"], drops or {})


def test_finishes_once_all_rows_are_reported_and_ignores_repeats() -> None:
    finished, advanced = [], []
    tracker = UnitTracker({0: 10, 1: 4}, lambda unit, parts: finished.append((unit, sorted(p.row0 for p in parts))),
                          advanced.append)
    tracker(_part(0, 0, 6, 5))
    tracker(_part(1, 0, 4, 4))
    tracker(_part(0, 0, 6, 5))  # a re-executed task reports the same part again
    assert finished == [(1, [0])]
    tracker(_part(0, 6, 4, 1))
    assert finished == [(1, [0]), (0, [0, 6])]
    assert advanced == [6, 4, 4] and tracker.committed == 2


def test_more_rows_than_the_unit_holds_is_a_bug() -> None:
    tracker = UnitTracker({0: 5}, lambda unit, parts: None, lambda rows: None)
    tracker(_part(0, 0, 3, 3))
    with pytest.raises(RuntimeError, match="unit 0: 6 rows reported for 5"):
        tracker(_part(0, 3, 3, 3))


def test_unit_stats_sum_the_parts() -> None:
    parts = [_part(2, 0, 6, 4, {"download": {"http_404": 2}}), _part(2, 6, 4, 1, {"download": {"http_404": 1, "timeout": 1},
                                                                                    "laion_caption": {"caption_too_short": 1}})]
    parts[0].seconds, parts[1].seconds = {"download": 1.5, "laion_caption": 0.25}, {"download": 0.5}
    parts[0].histograms = {"caption_chars": {"keys": [16000, 16100], "counts": [2, 4]}}
    parts[1].histograms = {"caption_chars": {"keys": [16100, 16200], "counts": [1, 3]}, "width": {"keys": [7], "counts": [1]}}
    before = time.time()
    stats = unit_stats(2, 10, parts)
    assert before <= stats.pop("committed_at") <= time.time()
    assert stats == {
        "unit": 2, "rows": 10, "kept": 5,
        "drops": {"download": {"http_404": 3, "timeout": 1}, "laion_caption": {"caption_too_short": 1}},
        "seconds": {"download": 2.0, "laion_caption": 0.25},
        "histograms": {"caption_chars": {"keys": [16000, 16100, 16200], "counts": [2, 5, 3]},
                       "width": {"keys": [7], "counts": [1]}},
    }
