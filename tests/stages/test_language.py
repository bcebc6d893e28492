"""language_id (curate.stages.language) on tiny tables: codes, probabilities, newline safety,
empty captions, the two reasons, and the spec-check errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.config import load_spec
from curate.errors import ConfigError
from curate.models import fasttext_lid
from curate.stages.language import LanguageIdFilter, LanguageIdParams

FRENCH = "Ceci est une phrase en français"
ENGLISH = "The cat sleeps on the red sofa"
GERMAN = "Der Hund spielt im Garten"


@pytest.fixture(scope="module")
def bare():
    """fastText's own one-text predict, to compare with (top-1 code, float32 probability)."""
    import fasttext

    raw = fasttext.load_model(str(fasttext_lid.resolve(None)))

    def predict(text: str) -> tuple[str, float]:
        labels, probs = raw.predict(text)
        return labels[0].removeprefix("__label__"), float(np.float32(probs[0]))
    return predict


def stage(**params) -> LanguageIdFilter:
    built = LanguageIdFilter(LanguageIdParams(**params))
    built.setup()
    return built


def run(filt: LanguageIdFilter, captions: list[str | None]):
    batch = pa.table({"uid": [f"{i:032x}" for i in range(len(captions))], "caption": pa.array(captions, pa.string())})
    scored = filt.process(batch)
    assert scored.column("uid").to_pylist() == batch.column("uid").to_pylist()
    decision = filt.decide(scored)
    verdicts = list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))
    return scored, verdicts


def test_defaults_tag_only() -> None:
    assert LanguageIdParams().model_dump() == {"model": None, "languages": None, "min_prob": 0.0}
    filt = stage()
    assert (filt.kind, filt.writes, filt.has_setup) == ("language_id", ("lang", "lang_prob"), True)
    scored, verdicts = run(filt, [FRENCH, ENGLISH, GERMAN, None])
    assert verdicts == [(True, None, None)] * 4  # no languages, min_prob 0: nothing dropped
    assert scored.column("lang").to_pylist() == ["fr", "en", "de", "und"]


def test_codes_and_probabilities_are_fasttexts(bare) -> None:
    scored, _ = run(stage(), [FRENCH, ENGLISH, GERMAN, "日本語の文章です"])
    assert scored.schema.field("lang_prob").type == pa.float32()
    expected = [bare(FRENCH), bare(ENGLISH), bare(GERMAN), bare("日本語の文章です")]
    assert list(zip(scored.column("lang").to_pylist(), scored.column("lang_prob").to_pylist(), strict=True)) == expected
    assert [code for code, _ in expected] == ["fr", "en", "de", "ja"]


def test_newlines_and_control_characters_are_spaces(bare) -> None:
    """fastText reads one line: its wrapper refuses '\\n' and a raw '\\n' would end the text."""
    captions = ["Ceci est une phrase\nen français", "Ceci est une phrase\r\nen\tfrançais",
                "Ceci est\x00une phrase en\x1ffrançais"]
    scored, _ = run(stage(), captions)
    expected = [bare("Ceci est une phrase en français"), bare("Ceci est une phrase  en français"),
                bare("Ceci est une phrase en français")]
    assert list(zip(scored.column("lang").to_pylist(), scored.column("lang_prob").to_pylist(), strict=True)) == expected
    assert scored.column("caption").to_pylist() == captions  # the caption itself is untouched


def test_empty_captions_are_undetermined() -> None:
    scored, verdicts = run(stage(languages=["en"]), [None, "", "  \n\t ", "\u00a0", ENGLISH])
    assert scored.column("lang").to_pylist() == ["und", "und", "und", "und", "en"]
    assert scored.column("lang_prob").to_pylist() == [0.0, 0.0, 0.0, 0.0, pytest.approx(0.8167531, abs=1e-6)]
    assert verdicts[:4] == [(False, "language_not_kept", "lang=und")] * 4
    assert verdicts[4] == (True, None, None)
    _, verdicts = run(stage(languages=["en", "und"]), [None, ""])
    assert verdicts == [(True, None, None)] * 2  # und listed: empty captions kept


def test_datacomp_rule_keeps_top1_english() -> None:
    _, verdicts = run(stage(languages=["en"]), [ENGLISH, FRENCH, GERMAN])
    assert verdicts == [(True, None, None), (False, "language_not_kept", "lang=fr"), (False, "language_not_kept", "lang=de")]


def test_min_prob_after_the_language_rule(bare) -> None:
    # ENGLISH is en at 0.8168, FRENCH fr at 0.9989, GERMAN de at 0.99995
    _, verdicts = run(stage(languages=["en", "fr"], min_prob=0.9), [ENGLISH, FRENCH, GERMAN])
    assert verdicts == [(False, "language_low_confidence", "prob=0.8168"), (True, None, None),
                        (False, "language_not_kept", "lang=de")]
    assert round(bare(ENGLISH)[1], 4) == 0.8168
    _, verdicts = run(stage(min_prob=0.9), [ENGLISH, GERMAN, None])  # no languages: min_prob alone
    assert verdicts == [(False, "language_low_confidence", "prob=0.8168"), (True, None, None),
                        (False, "language_low_confidence", "prob=0")]


def test_chunked_batches() -> None:
    filt = stage(languages=["fr"])
    batch = pa.Table.from_batches([
        pa.record_batch({"caption": pa.array([FRENCH, None], pa.string())}),
        pa.record_batch({"caption": pa.array([ENGLISH], pa.string())}),
    ])
    decision = filt.decide(filt.process(batch))
    assert isinstance(decision.keep, pa.BooleanArray)
    assert decision.reason.to_pylist() == [None, "language_not_kept", "language_not_kept"]


def spec_error(stage_params: dict) -> str:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": "in.parquet"}, "stages": [{"stage": "language_id", **stage_params}]})
    return str(err.value)


def test_unknown_language_code_fails_at_spec_check() -> None:
    assert spec_error({"languages": ["en", "eng"]}) == (
        "<dict>: stages[0]: languages: 'eng' is not a code of the model "
        "(176 codes, e.g. en, de, fr, zh, pt; und keeps empty captions)")


def test_missing_model_fails_at_spec_check(tmp_path: Path) -> None:
    missing = tmp_path / "lid.176.bin"
    assert spec_error({"model": str(missing)}).startswith(f"<dict>: stages[0].model: language model {missing}: no such file (")
    assert "min_prob" in spec_error({"min_prob": 1.5})


def test_a_user_model_path(tmp_path: Path) -> None:
    copy = tmp_path / "lid.176.ftz"
    copy.write_bytes(fasttext_lid.resolve(None).read_bytes())
    scored, verdicts = run(stage(model=str(copy), languages=["fr"]), [FRENCH, ENGLISH])
    assert scored.column("lang").to_pylist() == ["fr", "en"]
    assert verdicts[1] == (False, "language_not_kept", "lang=en")
