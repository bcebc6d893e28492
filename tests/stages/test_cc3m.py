"""cc3m_caption (Sharma et al. 2018, §3) on tiny tables with hand-computed expectations."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import ConfigError
from curate.stages.cc3m import Cc3mCaptionFilter, Cc3mCaptionParams
from curate.text.wordnet import DEFAULT_DIR
from tests.text.wndb import write_dict

pytestmark = pytest.mark.skipif(not (Path(DEFAULT_DIR) / "data.noun").exists(),
                                reason=f"needs WordNet dict files in {DEFAULT_DIR} (apt-get install wordnet-base)")


def stage(**params) -> Cc3mCaptionFilter:
    built = Cc3mCaptionFilter(Cc3mCaptionParams(**params))
    built.setup()
    return built


def run(filt: Cc3mCaptionFilter, captions: list[str | None]) -> tuple[pa.Table, list[tuple]]:
    scored = filt.process(pa.table({"caption": pa.array(captions, pa.string())}))
    decision = filt.decide(scored)
    return scored, list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def test_a_well_formed_caption_passes_every_rule() -> None:
    scored, verdicts = run(stage(), ["A red barn in the snow"])
    assert verdicts == [(True, None, None)]
    row = scored.to_pylist()[0]
    assert row["caption"] == "A red barn in the snow" and row["caption_original"] is None
    assert (row["caption_first_word"], row["caption_repetition"]) == ("A", 0.0)
    assert row["caption_capitalised_ratio"] == pytest.approx(1 / 6)
    assert (row["caption_has_determiner"], row["caption_has_noun"], row["caption_has_preposition"]) == (True, True, True)
    assert row["caption_rarest_token"] == "barn" and row["caption_min_zipf"] == pytest.approx(3.99, abs=0.005)


def test_each_rule_its_own_reason() -> None:
    _, verdicts = run(stage(), [
        "stock photo",                       # nothing but boilerplate
        "a red barn in the snow",            # first word lower case
        "3 red barns in the snow",           # a digit is not a capital
        "A Red Barn In The snow",            # 5 of 6 capitalised
        "Red barn in snow",                  # no determiner
        "A of the in with",                  # every word closed-class: no noun
        "A red barn",                        # no preposition
        "A dog and a dog and a cat on the mat",  # content words dog dog cat mat: 1/4
        "A photo of a zzqxv in the park",    # not in wordfreq's English list
        None,                                # missing: as ""
    ])
    assert verdicts == [
        (False, "boilerplate_caption", "phrase=stock photo"),
        (False, "first_word_not_capitalised", "first_word=a"),
        (False, "first_word_not_capitalised", "first_word=3"),
        (False, "too_many_capitalised_words", "capitalised_ratio=0.8333333"),
        (False, "missing_determiner", "has_determiner=false"),
        (False, "missing_noun", "has_noun=false"),
        (False, "missing_preposition", "has_preposition=false"),
        (False, "repetitive_caption", "repetition=0.25"),
        (False, "rare_token", "token=zzqxv"),
        (False, "first_word_not_capitalised", "first_word="),
    ]


def test_boundaries_of_the_ratios() -> None:
    # 2 of 4 capitalised = 0.5 (kept: the rule is "above"); 3 of 5 = 0.6 dropped
    _, verdicts = run(stage(), ["A barn in Ohio", "A Barn in New"])
    assert [v[:2] for v in verdicts] == [(True, None), (False, "too_many_capitalised_words")]
    # closed-class words are not counted: "a" four times is no repetition; content words
    # dog cat dog red mat: 1/5 = 0.2 (kept); dog cat dog cat red mat big old tree: 2/9 (dropped)
    _, verdicts = run(stage(), ["A dog and a cat near a dog on a red mat",
                                "A dog and a cat near a dog and a cat on a red mat by a big old tree"])
    assert verdicts[0] == (True, None, None)
    assert verdicts[1] == (False, "repetitive_caption", "repetition=0.22222222")


def test_boilerplate_is_cropped_where_a_caption_remains() -> None:
    captions = [
        "A red barn in the snow - stock photo",
        "Stock Photo: A red barn in the snow",
        "Image may contain: A man on the beach | click to enlarge",
        "A red barn in the snow (view larger image)",
        "A red barn in the snow | embedded image permalink",
        "Profile Photo",
        "A stockphoto of a barn in the snow",  # not a whole word: untouched
    ]
    scored, verdicts = run(stage(), captions)
    assert scored.column("caption").to_pylist() == [
        "A red barn in the snow", "A red barn in the snow", "A man on the beach", "A red barn in the snow",
        "A red barn in the snow", "Profile Photo", "A stockphoto of a barn in the snow",
    ]
    assert scored.column("caption_original").to_pylist() == [*captions[:5], None, None]
    assert [v[:2] for v in verdicts[:5]] == [(True, None)] * 5
    assert verdicts[5] == (False, "boilerplate_caption", "phrase=profile photo")
    assert verdicts[6] == (False, "rare_token", "token=stockphoto")


def test_hypernymisation_replaces_multi_word_instances() -> None:
    captions = ["Abraham Lincoln on a horse in New York", "A statue of George Washington in the park",
                "A view of Washington from the river"]
    scored, verdicts = run(stage(), captions)
    assert scored.column("caption").to_pylist() == [
        "president on a horse in city", "A statue of president in the park",
        "A view of Washington from the river",  # one word: ambiguous, kept
    ]
    assert scored.column("caption_original").to_pylist() == [*captions[:2], None]
    # the rules score the caption before replacement: "Abraham Lincoln on ..." is capitalised
    assert [v[:2] for v in verdicts] == [(True, None)] * 3
    scored, _ = run(stage(hypernymize=False), captions[:1])
    assert scored.column("caption").to_pylist() == captions[:1]


def test_barack_obama_becomes_president_with_wordnet_31s_synset(tmp_path: Path) -> None:
    scored, _ = run(stage(wordnet=str(write_dict(tmp_path / "wn"))), ["Barack Obama at a rally in the rain"])
    assert scored.column("caption").to_pylist() == ["president at a rally in the rain"]
    assert scored.column("caption_original").to_pylist() == ["Barack Obama at a rally in the rain"]


def test_function_words_repeat_in_good_captions() -> None:
    # all words counted, "a" x4, "the" x2, "at" x2: 5/20 repeated would drop this clean caption
    caption = "A picture of a purple circle at the bottom and a brown diamond at the top on a plain background"
    scored, verdicts = run(stage(), [caption])
    assert scored.column("caption_repetition").to_pylist() == [0.0] and verdicts == [(True, None, None)]


def test_thresholds_retune_without_rescoring() -> None:
    filt = stage()
    scored, _ = run(filt, ["A Red Barn in the snow", "A photo of a zzqxv in the park"])
    loose = Cc3mCaptionFilter(Cc3mCaptionParams(max_capitalised_ratio=0.6, min_zipf=0))
    assert loose.decide(scored).keep.to_pylist() == [True, True]  # decide alone: no setup, no rescoring


def test_a_missing_wordnet_is_a_spec_time_error(tmp_path: Path) -> None:
    from curate.config import load_spec

    spec = {"input": {"path": str(tmp_path / "in.parquet")},
            "stages": [{"stage": "cc3m_caption", "wordnet": str(tmp_path / "nowhere")}]}
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert str(err.value) == (
        f"<dict>: stages[0].wordnet: WordNet dict files not found in {tmp_path / 'nowhere'} (no readable data.noun): "
        "install them with `apt-get install wordnet-base` or give the stage's `wordnet: PATH` parameter a WordNet "
        "dict directory"
    )
    assert err.value.exit_code == 2


def test_loads_through_the_registry() -> None:
    from curate.stages.registry import stage_kinds

    assert stage_kinds()["cc3m_caption"] is Cc3mCaptionFilter
