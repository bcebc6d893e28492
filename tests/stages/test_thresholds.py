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


def test_caption_and_image_rules_name_their_cuts_on_columns_a_row_has():
    laion, datacomp, dedup, _, image, sizes = _stages(
        {"stage": "laion_caption"}, {"stage": "datacomp_caption"}, {"stage": "url_dedup"}, {"stage": "download"},
        {"stage": "datacomp_image"}, {"stage": "image_checks", "min_side": 10})
    assert laion.thresholds() == [Threshold("caption_chars", 5, "above")]
    assert datacomp.thresholds() == [Threshold("caption_chars", 6, "above"), Threshold("caption_words", 3, "above")]
    assert dedup.thresholds() == []
    # the shorter side is no column (orig_width and orig_height are): no line for min_side
    assert image.thresholds() == [Threshold("aspect_ratio", 3.0, "below")]
    assert sizes.thresholds() == []
