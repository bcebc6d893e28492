"""cc12m_caption (Changpinyo et al. 2021, §2) on tiny tables with hand-computed expectations."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import ConfigError
from curate.stages.cc12m import Cc12mCaptionFilter, Cc12mCaptionParams
from curate.text.wordnet import DEFAULT_DIR

pytestmark = pytest.mark.skipif(not (Path(DEFAULT_DIR) / "data.noun").exists(),
                                reason=f"needs WordNet dict files in {DEFAULT_DIR} (apt-get install wordnet-base)")


def stage(**params) -> Cc12mCaptionFilter:
    built = Cc12mCaptionFilter(Cc12mCaptionParams(**params))
    built.setup()
    return built


def run(filt: Cc12mCaptionFilter, captions: list[str | None]) -> tuple[pa.Table, list[tuple]]:
    scored = filt.process(pa.table({"caption": pa.array(captions, pa.string())}))
    decision = filt.decide(scored)
    return scored, list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def test_defaults_are_the_papers() -> None:
    params = Cc12mCaptionParams()
    assert (params.min_words, params.max_words, params.max_repetition, params.names) == (3, 256, 0.2, None)


def test_each_rule_its_own_reason() -> None:
    long_caption = "a dog " + " ".join(f"w{i}" for i in range(255))  # 257 words, all distinct but "a dog"
    _, verdicts = run(stage(), [
        "a red barn",                    # 3 words: kept (no capital or preposition needed)
        "a barn",                        # 2 words
        "A barn - !",                    # punctuation is no word: 2
        long_caption,
        "red barns in snow",             # no determiner
        "this is what it was",           # every word closed-class: no noun
        "a dog and a dog and a cat on the mat",  # content words dog dog cat mat: 1/4
        None,                            # missing: as "", 0 words
    ])
    assert verdicts == [
        (True, None, None),
        (False, "too_few_words", "words=2"),
        (False, "too_few_words", "words=2"),
        (False, "too_many_words", "words=257"),
        (False, "missing_determiner", "has_determiner=false"),
        (False, "missing_noun", "has_noun=false"),
        (False, "repetitive_caption", "repetition=0.25"),
        (False, "too_few_words", "words=0"),
    ]


def test_boundaries() -> None:
    exactly_256 = "a dog " + " ".join(f"w{i}" for i in range(254))
    # closed-class words are not counted: content words dog cat dog red mat: 1/5 = 0.2 (kept);
    # dog cat dog cat red mat big old tree: 2/9 (dropped)
    _, verdicts = run(stage(), [exactly_256, "a dog and a cat near a dog on a red mat",
                                "a dog and a cat near a dog and a cat on a red mat by a big old tree"])
    assert verdicts == [(True, None, None), (True, None, None), (False, "repetitive_caption", "repetition=0.22222222")]


def test_names_become_person_and_the_original_is_kept(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Harrison Ford\n\n  Ford  \nAnn\n", encoding="utf-8")
    captions = ["Harrison Ford at the premiere of a film", "A Ford truck by Annie", "a dog on a sofa", None]
    scored, verdicts = run(stage(names=str(names)), captions)
    assert scored.column("caption").to_pylist() == [
        "<PERSON> at the premiere of a film",  # the longest name at a position wins
        "A <PERSON> truck by Annie",          # whole words, case-sensitive: "Annie" is not "Ann"
        "a dog on a sofa", None,
    ]
    assert scored.column("caption_original").to_pylist() == [*captions[:2], None, None]
    # scored as read: "Harrison Ford at the premiere of a film" has 8 words
    assert scored.column("caption_word_count").to_pylist() == [8, 5, 5, 0]
    assert [v[0] for v in verdicts] == [True, True, True, False]
    scored, _ = run(stage(), captions[:1])
    assert scored.column("caption").to_pylist() == captions[:1]  # no names file: names are kept


def test_function_words_repeat_in_good_captions() -> None:
    # all words counted, "a" x4, "the" x2, "at" x2: 5/20 repeated would drop this clean caption
    caption = "a picture of a purple circle at the bottom and a brown diamond at the top on a plain background"
    scored, verdicts = run(stage(), [caption])
    assert scored.column("caption_repetition").to_pylist() == [0.0] and verdicts == [(True, None, None)]


def test_thresholds_retune_without_rescoring() -> None:
    scored, _ = run(stage(), ["a barn", "a dog and a dog and a cat on the mat"])
    loose = Cc12mCaptionFilter(Cc12mCaptionParams(min_words=2, max_repetition=0.5))
    assert loose.decide(scored).keep.to_pylist() == [True, True]


@pytest.mark.parametrize(("params", "message"), [
    ({"names": "{tmp}/nope.txt"}, "stages[0].names: names file {tmp}/nope.txt is not a readable file "
                                  "(give a text file with one person name per line)"),
    ({"names": "{tmp}"}, "stages[0].names: names file {tmp} is not a readable file "
                         "(give a text file with one person name per line)"),
    ({"min_words": 10, "max_words": 5}, "stages[0]: min_words 10 is above max_words 5"),
    ({"wordnet": "{tmp}/wn"}, "stages[0].wordnet: WordNet dict files not found in {tmp}/wn (no readable data.noun): "
                              "install them with `apt-get install wordnet-base` or give the stage's `wordnet: PATH` "
                              "parameter a WordNet dict directory"),
])
def test_bad_params_are_one_line_spec_errors(tmp_path: Path, params: dict, message: str) -> None:
    from curate.config import load_spec

    params = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in params.items()}
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": str(tmp_path / "in.parquet")}, "stages": [{"stage": "cc12m_caption", **params}]})
    assert str(err.value) == f"<dict>: {message.format(tmp=tmp_path)}"


def test_loads_through_the_registry() -> None:
    from curate.stages.registry import stage_kinds

    assert stage_kinds()["cc12m_caption"] is Cc12mCaptionFilter
