"""Caption rules (curate.stages.text) on tiny tables, with exact boundaries."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.stages.text import (
    CaptionRulesFilter,
    CaptionRulesParams,
    DataCompCaptionFilter,
    DataCompCaptionParams,
    LaionCaptionFilter,
    LaionCaptionParams,
)


def run(stage, captions: list[str | None]) -> tuple[pa.Table, list[tuple[bool, str | None, str | None]]]:
    batch = pa.table({"uid": [f"{i:032x}" for i in range(len(captions))], "caption": pa.array(captions, pa.string())})
    scored = stage.process(batch)
    assert scored.column("uid").to_pylist() == batch.column("uid").to_pylist()  # same rows, same order
    decision = stage.decide(scored)
    verdicts = list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))
    return scored, verdicts


def laion() -> LaionCaptionFilter:
    return LaionCaptionFilter(LaionCaptionParams())


def datacomp() -> DataCompCaptionFilter:
    return DataCompCaptionFilter(DataCompCaptionParams())


def test_defaults_are_the_papers_thresholds() -> None:
    assert LaionCaptionParams().model_dump() == {"min_chars": 5}
    assert (DataCompCaptionParams().min_chars, DataCompCaptionParams().min_words) == (6, 3)
    assert (laion().kind, datacomp().kind, laion().name) == ("laion_caption", "datacomp_caption", "laion_caption")


def test_score_columns() -> None:
    captions = ["a cat", "", None, "  two  words  ", "café au lait"]
    assert run(laion(), captions)[0].column_names == ["uid", "caption", "caption_chars"]  # LAION scores characters only
    scored, _ = run(datacomp(), captions)
    assert scored.schema.field("caption_chars").type == pa.int32()
    assert scored.schema.field("caption_words").type == pa.int32()
    assert scored.column("caption_chars").to_pylist() == [5, 0, 0, 14, 12]
    assert scored.column("caption_words").to_pylist() == [2, 0, 0, 2, 3]
    assert scored.column("caption").to_pylist()[2] is None  # the caption itself is untouched


def test_laion_boundary_at_five_characters() -> None:
    _, verdicts = run(laion(), ["abcd", "abcde", "abcdef", None, ""])
    assert verdicts == [
        (False, "caption_too_short", "chars=4"),
        (True, None, None),
        (True, None, None),
        (False, "caption_too_short", "chars=0"),
        (False, "caption_too_short", "chars=0"),
    ]


def test_laion_counts_characters_not_bytes() -> None:
    # "café" is 4 characters (5 UTF-8 bytes); "日本語の猫" is 5 characters (15 bytes)
    _, verdicts = run(laion(), ["café", "日本語の猫", "🐈🐈🐈🐈"])
    assert [v[:2] for v in verdicts] == [(False, "caption_too_short"), (True, None), (False, "caption_too_short")]
    assert verdicts[0][2] == "chars=4" and verdicts[2][2] == "chars=4"


def test_datacomp_boundaries_chars_and_words() -> None:
    _, verdicts = run(datacomp(), [
        "ab cd",            # 5 chars, 2 words: too short (chars is checked first)
        "a b c",            # 5 chars, 3 words: too short
        "a b cd",           # 6 chars, 3 words: kept
        "hello world",      # 11 chars, 2 words: too few words
        "hello big world",  # 15 chars, 3 words: kept
        "abcdef",           # 6 chars, 1 word
        " hello world ",    # 13 chars, still 2 words: padding is not a word
        None,
    ])
    assert verdicts == [
        (False, "caption_too_short", "chars=5"),
        (False, "caption_too_short", "chars=5"),
        (True, None, None),
        (False, "caption_too_few_words", "words=2"),
        (True, None, None),
        (False, "caption_too_few_words", "words=1"),
        (False, "caption_too_few_words", "words=2"),
        (False, "caption_too_short", "chars=0"),
    ]


def test_unicode_whitespace_separates_words() -> None:
    nbsp, em_space, ideographic, tab = "\u00a0", "\u2003", "\u3000", "\t"
    captions = [
        f"red{nbsp}circle{em_space}here",   # 3 words through NBSP and EM SPACE
        f"猫が{ideographic}窓の{ideographic}そば",  # 3 words through IDEOGRAPHIC SPACE
        f"two{tab}{tab}words",              # runs of whitespace are one separator
        f"  padded  {nbsp}",                # leading/trailing whitespace makes no word
    ]
    scored, verdicts = run(datacomp(), captions)
    assert scored.column("caption_words").to_pylist() == [3, 3, 2, 1]
    assert scored.column("caption_chars").to_pylist() == [15, 8, 10, 11]
    assert [v[:2] for v in verdicts] == [
        (True, None), (True, None), (False, "caption_too_few_words"), (False, "caption_too_few_words"),
    ]


def test_generic_caption_rules_and_chunked_input() -> None:
    stage = CaptionRulesFilter(CaptionRulesParams(min_chars=3, min_words=2), name="my_rules")
    assert stage.name == "my_rules"
    batch = pa.Table.from_batches([
        pa.record_batch({"caption": pa.array(["ab", "abc"], pa.string())}),
        pa.record_batch({"caption": pa.array(["a b", None], pa.string())}),
    ])
    decision = stage.decide(stage.process(batch))
    assert isinstance(decision.keep, pa.BooleanArray)
    assert decision.keep.to_pylist() == [False, False, True, False]
    assert decision.reason.to_pylist() == ["caption_too_short", "caption_too_few_words", None, "caption_too_short"]
    assert decision.detail.to_pylist() == ["chars=2", "words=1", None, "chars=0"]


def test_zero_thresholds_keep_everything() -> None:
    stage = CaptionRulesFilter(CaptionRulesParams())
    _, verdicts = run(stage, ["", None, "x"])
    assert [v[:2] for v in verdicts] == [(True, None)] * 3


@pytest.mark.parametrize("bad", [{"min_chars": -1}, {"min_words": -2}, {"bogus": 1}])
def test_params_are_validated(bad) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CaptionRulesParams(**bad)
