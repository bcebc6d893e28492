"""Each filter names the cut it applies to a score column (drawn on that column's histogram in
the report; written to stats/thresholds.json)."""

from curate.config import build_stages, parse_spec
from curate.stages.base import Threshold


def _stages(*stages: dict):
    return build_stages(parse_spec({"name": "t", "input": {"path": "in.parquet"}, "stages": list(stages)}))


def test_language_id_cuts_lang_prob_only_when_it_has_a_minimum():
    tagged, cut = _stages({"stage": "language_id"}, {"stage": "language_id", "name": "en", "languages": ["en"],
                                                      "min_prob": 0.65})
    assert tagged.thresholds() == []
    assert cut.thresholds() == [Threshold("lang_prob", 0.65, "above")]


def test_filters_without_a_numeric_cut_name_none():
    assert [stage.thresholds() for stage in _stages({"stage": "laion_caption"}, {"stage": "url_dedup"})] == [[], []]
