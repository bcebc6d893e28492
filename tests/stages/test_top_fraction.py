"""``top_fraction``: the order-preserving score bins, the threshold from the summed histogram
(exact on hand-made pools), the decision and its ledger rows, the data card."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.engine.blocks import apply_stage
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, UID
from curate.stages.top_fraction import TopFractionFilter, TopFractionParams, bin_floor, render_card, score_bins
from tests.global_stage import reduce_in_process


def _rows(scores: list[float | None], column: str = "clip_score") -> pa.Table:
    n = len(scores)
    return pa.table({UID: [f"{i:032x}" for i in range(n)], column: pa.array(scores, pa.float32()),
                     DROP_STAGE: pa.nulls(n, pa.string()), DROP_REASON: pa.nulls(n, pa.string()),
                     DROP_DETAIL: pa.nulls(n, pa.string())})


def _reduced(tmp_path, tables, **params) -> TopFractionFilter:
    stage = TopFractionFilter(TopFractionParams(**params))
    reduce_in_process(stage, tables, tmp_path / "state" / stage.name)
    return stage


def test_bins_keep_the_order_of_every_float32() -> None:
    values = np.array([-np.inf, -3.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.2, 0.28, 0.3, 0.31, 1.0, 7.5, np.inf], np.float32)
    bins = score_bins(values)
    assert (np.diff(bins) >= 0).all()
    assert bins[8] < bins[9] < bins[10]  # 0.28 < 0.3 < 0.31: distinct bins at CLIP-score scale


def test_bin_floor_is_the_smallest_score_of_its_bin() -> None:
    scores = np.random.default_rng(0).normal(0.25, 2.0, 5000).astype(np.float32)
    floors = np.array([bin_floor(b) for b in score_bins(scores)], np.float32)
    assert (floors <= scores).all()
    assert (score_bins(floors) == score_bins(scores)).all()
    assert (score_bins(np.nextafter(floors, np.float32(-np.inf))) < score_bins(scores)).all()  # one below: the bin below


def test_threshold_keeps_the_top_fraction_of_two_units(tmp_path) -> None:
    first, second = _rows([0.10, 0.50, 0.30, 0.20, 0.40]), _rows([0.35, 0.05, 0.45, 0.25, 0.15])
    stage = _reduced(tmp_path, [first, second], fraction=0.3)
    assert (stage.scored, stage.kept) == (10, 3)
    assert bin_floor(stage.threshold_bin) == pytest.approx(0.40, abs=5e-5) and bin_floor(stage.threshold_bin) <= 0.40
    out = apply_stage(stage, first)
    assert out.column(DROP_REASON).to_pylist() == ["below_top_fraction", None, "below_top_fraction",
                                                   "below_top_fraction", None]
    threshold = f"{bin_floor(stage.threshold_bin):.4f}"
    assert out.column(DROP_DETAIL).to_pylist()[0] == f"clip_score=0.1<{threshold}"
    assert out.column(DROP_STAGE).to_pylist() == ["top_fraction", None, "top_fraction", "top_fraction", None]


def test_a_fraction_between_rows_rounds_up_and_ties_stay_together(tmp_path) -> None:
    stage = _reduced(tmp_path, [_rows([0.9, 0.9, 0.9, 0.1, 0.2, 0.3])], fraction=0.25)  # 1.5 rows -> the 3 tied rows
    assert (stage.scored, stage.kept) == (6, 3)
    kept = apply_stage(stage, _rows([0.9, 0.3])).column(DROP_REASON).to_pylist()
    assert kept == [None, "below_top_fraction"]


def test_rows_without_a_score_are_ledger_rows_and_not_counted(tmp_path) -> None:
    rows = _rows([0.5, None, float("nan"), 0.1])
    stage = _reduced(tmp_path, [rows], fraction=0.5)
    assert (stage.scored, stage.kept) == (2, 1)
    assert apply_stage(stage, rows).column(DROP_REASON).to_pylist() == [None, "score_missing", "score_missing",
                                                                        "below_top_fraction"]


def test_any_score_column_and_negative_scores(tmp_path) -> None:
    rows = _rows([-2.0, -1.0, 3.5, 0.0], column="aesthetic")
    stage = _reduced(tmp_path, [rows], column="aesthetic", fraction=0.5)
    assert stage.reads == ("aesthetic",)
    assert apply_stage(stage, rows).column(DROP_REASON).to_pylist() == ["below_top_fraction", "below_top_fraction",
                                                                        None, None]


def test_data_card_names_the_threshold(tmp_path) -> None:
    stage = _reduced(tmp_path, [_rows([0.1, 0.2, 0.3, 0.4])], fraction=0.5)
    name, card = stage.data_card(str(tmp_path), [])
    assert name == "top_fraction.json"
    assert card["rows_scored"] == 4 and card["rows_kept"] == 2 and card["kept_fraction"] == 0.5
    assert card["threshold"] == bin_floor(stage.threshold_bin) and 0.2999 < card["threshold"] <= 0.3
    assert render_card(card) == [f"top_fraction: top 50% by clip_score: threshold {card['threshold']:.6f}, "
                                 "kept 2 of 4 scored (50.0000%)"]
