"""rare_words (curate.stages.rare_words): tokenisation, whole-input counts through both phases,
the min_count and top_n vocabularies (ties cut deterministically), the state cap, bad params."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError, UserError
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UNIT
from curate.stages.rare_words import RareWordsFilter, RareWordsParams, word_tokens
from curate.stages.registry import stage_kinds
from tests.global_stage import reduce_in_process


def unit(index: int, captions: list[str | None]) -> pa.Table:
    n = len(captions)
    nulls = pa.nulls(n, pa.string())
    return pa.table({"uid": [f"{index:016x}{i:016x}" for i in range(n)], "caption": pa.array(captions, pa.string()),
                     UNIT: pa.array([index] * n, pa.int32()), ROW: pa.array(range(n), pa.int32()),
                     DROP_STAGE: nulls, DROP_REASON: nulls, DROP_DETAIL: nulls})


def two_phase(units: list[pa.Table], root: Path, partitions: int = 3, **params) -> RareWordsFilter:
    stage = RareWordsFilter(RareWordsParams(**params))
    reduce_in_process(stage, units, root, partitions)
    return stage


def ledger(stage: RareWordsFilter, table: pa.Table) -> list[tuple[str | None, str | None]]:
    out = apply_stage(stage, table).sort_by([(ROW, "ascending")])
    assert out.column(DROP_STAGE).to_pylist() == [stage.name if r else None for r in out.column(DROP_REASON).to_pylist()]
    return list(zip(out.column(DROP_REASON).to_pylist(), out.column(DROP_DETAIL).to_pylist(), strict=True))


def test_words_are_lower_cased_runs_of_letters_digits_and_inner_apostrophes() -> None:
    words, rows = word_tokens(pa.chunked_array([pa.array(
        ["Dog's LIFE, 1920x1080!", None, "", "'Quoted' ’tis—CAFÉ  naïve\tend.", "--- !!!"])]))
    assert words.to_pylist() == ["dog's", "life", "1920x1080", "quoted", "tis", "café", "naïve", "end"]
    assert rows.tolist() == [0, 0, 0, 3, 3, 3, 3, 3]


def test_observe_counts_each_units_words() -> None:
    summary = RareWordsFilter(RareWordsParams(min_count=1)).observe(unit(0, ["a cat, A dog", "the CAT", None]))
    assert sorted(summary.to_pylist(), key=lambda r: r["word"]) == [
        {"word": "a", "count": 2}, {"word": "cat", "count": 2}, {"word": "dog", "count": 1}, {"word": "the", "count": 1}]
    assert summary.schema.field("count").type == pa.int64()


UNITS = [
    ["a red dog", "a red cat", "A zebra!"],
    ["a blue dog", "red and blue", None, ""],
    ["the dog", "a dog and a cat"],
]
# Whole-input counts: a 5, dog 4, red 3, blue 2, cat 2, and 2, zebra 1, the 1.


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_min_count_vocabulary_over_the_whole_input(tmp_path: Path, partitions: int) -> None:
    units = [unit(i, captions) for i, captions in enumerate(UNITS)]
    stage = two_phase(units, tmp_path, partitions, min_count=2)
    assert sorted(stage.vocabulary.to_pylist()) == ["a", "and", "blue", "cat", "dog", "red"]
    assert ledger(stage, units[0]) == [(None, None), (None, None), ("rare_word", "word=zebra rare_words=1")]
    assert ledger(stage, units[1]) == [(None, None)] * 4  # a missing caption has no words: kept
    assert ledger(stage, units[2]) == [("rare_word", "word=the rare_words=1"), (None, None)]
    scored = stage.process(units[0])
    assert scored.column("rare_word").to_pylist() == [None, None, "zebra"]
    assert scored.column("rare_word_count").to_pylist() == [0, 0, 1]
    assert scored.schema.field("rare_word_count").type == pa.int32()


def test_first_rare_word_and_how_many(tmp_path: Path) -> None:
    units = [unit(0, ["x y a a", "a y x z", "a b b c c"])]  # x 2, y 2, a 4, z 1, b 2, c 2
    stage = two_phase(units, tmp_path, min_count=3)
    assert stage.process(units[0]).column("rare_word").to_pylist() == ["x", "y", "b"]
    assert ledger(stage, units[0]) == [("rare_word", "word=x rare_words=2"), ("rare_word", "word=y rare_words=3"),
                                       ("rare_word", "word=b rare_words=4")]


def test_top_n_cuts_ties_by_the_smaller_word(tmp_path: Path) -> None:
    """red, blue, cat and "and" tie at counts 3, 2, 2, 2 behind a (5) and dog (4): top 4 keeps
    a, dog, red and the smallest of the three tied at 2 ("and")."""
    units = [unit(i, captions) for i, captions in enumerate(UNITS)]
    stage = two_phase(units, tmp_path, top_n=4)
    assert stage.vocabulary.to_pylist() == ["a", "dog", "red", "and"]
    assert ledger(stage, units[1]) == [("rare_word", "word=blue rare_words=1"), ("rare_word", "word=blue rare_words=1"),
                                       (None, None), (None, None)]


def test_top_n_does_not_depend_on_partitions_or_observe_order(tmp_path: Path) -> None:
    words = [f"w{i:02d}" for i in range(40)]
    shuffle = random.Random(7)
    captions = [" ".join(shuffle.choice(words[: 1 + i % 40]) for _ in range(6)) for i in range(300)]
    units = [unit(i, captions[i * 30:(i + 1) * 30]) for i in range(10)]
    vocabularies = set()
    for attempt, partitions in enumerate([1, 2, 3, 7, 16]):
        order = list(range(10))
        shuffle.shuffle(order)
        stage = two_phase([units[i] for i in order], tmp_path / str(attempt), partitions, top_n=14)
        vocabularies.add(tuple(stage.vocabulary.to_pylist()))
    assert len(vocabularies) == 1
    vocabulary = next(iter(vocabularies))
    assert len(vocabulary) == 14 and vocabulary[-1] == "w10" and "w13" not in vocabulary  # both 46 times: a tie at the cut


def test_min_count_and_top_n_together(tmp_path: Path) -> None:
    units = [unit(i, captions) for i, captions in enumerate(UNITS)]
    assert two_phase(units, tmp_path / "both", min_count=3, top_n=10).vocabulary.to_pylist() == ["a", "dog", "red"]
    assert two_phase(units, tmp_path / "top", min_count=2, top_n=2).vocabulary.to_pylist() == ["a", "dog"]


def test_state_over_its_cap_is_one_line(tmp_path: Path) -> None:
    stage = RareWordsFilter(RareWordsParams(min_count=1))
    stage.max_state_bytes = 40
    with pytest.raises(UserError) as err:
        reduce_in_process(stage, [unit(i, captions) for i, captions in enumerate(UNITS)], tmp_path, partitions=1)
    assert str(err.value) == ("stage rare_words: its state passed 0 MiB, the cap for state sent to every worker "
                              "(is its key really small by nature?)")


def test_an_input_without_words_keeps_everything(tmp_path: Path) -> None:
    stage = two_phase([unit(0, [None, "", "!!"])], tmp_path, min_count=2)
    assert stage.vocabulary.to_pylist() == []
    assert ledger(stage, unit(0, [None, "", "!!"])) == [(None, None)] * 3


def test_process_before_reduce_raises() -> None:
    with pytest.raises(RuntimeError, match="^stage rare_words ran before its vocabulary was reduced$"):
        RareWordsFilter(RareWordsParams(min_count=2)).process(unit(0, ["a"]))


@pytest.mark.parametrize(("params", "message"), [
    ({}, "stages[0]: rare_words needs min_count (CC12M: 20), top_n (ALIGN), or both"),
    ({"min_count": 0}, "stages[0].min_count: Input should be greater than or equal to 1"),
    ({"top_n": "many"}, "stages[0].top_n: Input should be a valid integer, unable to parse string as an integer"),
])
def test_bad_params_are_one_line_spec_errors(tmp_path: Path, params: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": str(tmp_path / "in.parquet")}, "stages": [{"stage": "rare_words", **params}]})
    assert str(err.value) == f"<dict>: {message}"


def test_registered() -> None:
    assert stage_kinds()["rare_words"] is RareWordsFilter
