"""curate.text.wordnet on Debian's WordNet 3.0 dict files and on a tiny dict in the same format."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.errors import UserError
from curate.text.wordnet import DEFAULT_DIR, WordNet
from tests.text.wndb import write_dict

needs_wordnet = pytest.mark.skipif(
    not (Path(DEFAULT_DIR) / "data.noun").exists(),
    reason=f"needs WordNet dict files in {DEFAULT_DIR} (apt-get install wordnet-base)",
)


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    if not (Path(DEFAULT_DIR) / "data.noun").exists():
        pytest.skip(f"needs WordNet dict files in {DEFAULT_DIR} (apt-get install wordnet-base)")
    return WordNet.open(DEFAULT_DIR)


def test_missing_dict_dir_is_one_line_naming_both_fixes(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        WordNet.open(tmp_path / "nowhere")
    assert str(err.value) == (
        f"WordNet dict files not found in {tmp_path / 'nowhere'} (no readable data.noun): install them with "
        "`apt-get install wordnet-base` or give the stage's `wordnet: PATH` parameter a WordNet dict directory"
    )
    partial = write_dict(tmp_path / "partial")
    (partial / "noun.exc").unlink()
    with pytest.raises(UserError, match=r"\(no readable noun.exc\)"):
        WordNet.open(partial)


def test_wordnet_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path / "env"))
    with pytest.raises(UserError, match=f"not found in {tmp_path / 'env'} "):
        WordNet.open()
    write_dict(tmp_path / "env")
    assert WordNet.open().dict_dir == tmp_path / "env"
    assert WordNet.open() is WordNet.open(tmp_path / "env")  # parsed once per process and directory


def test_barack_obama_is_a_president_in_wordnet_31s_synset(tmp_path: Path) -> None:
    # His synset has two instance hypernyms (lawyer, listed first, and President of the United
    # States); the gloss names the president first, and the synset's one-word lemma is "President".
    wordnet = WordNet.open(write_dict(tmp_path / "dict"))
    hypernyms = wordnet.instance_hypernyms()
    assert hypernyms["Barack Obama"] == "president"
    assert hypernyms["Barack Hussein Obama"] == "president" and hypernyms["Obama"] == "president"
    assert "dog" not in hypernyms  # not an instance
    assert wordnet.lemma_names() == [
        "President of the United States", "United States President", "President", "Chief Executive", "lawyer",
        "attorney", "Obama", "Barack Obama", "Barack Hussein Obama", "President Obama", "dog", "domestic dog",
        "Canis familiaris",
    ]
    assert wordnet.is_noun("dogs") and not wordnet.is_noun("cats") and not wordnet.is_noun("mice")  # no mouse here


def test_lemma_names_in_file_order_unique_with_spaces(wordnet: WordNet) -> None:
    names = wordnet.lemma_names()
    assert names[:5] == ["entity", "physical entity", "abstraction", "abstract entity", "thing"]
    assert len(names) == len(set(names)) == 148730
    assert not any("_" in name for name in names)
    assert len(wordnet.lemma_names("n")) == 119034
    assert "Abraham Lincoln" in wordnet.lemma_names("n")  # case as written
    assert "run" in wordnet.lemma_names("v") and "red" in wordnet.lemma_names("a")
    assert "quickly" in wordnet.lemma_names("r")
    with pytest.raises(ValueError, match="unknown part of speech 'x'"):
        wordnet.lemma_names("x")


def test_noun_and_adjective_lexicons(wordnet: WordNet) -> None:
    nouns, adjectives = wordnet.nouns(), wordnet.adjectives()
    assert {"dog", "hot dog", "abraham lincoln", "barn"} <= nouns
    assert "quickly" not in nouns and "the" not in nouns
    assert {"red", "abaxial", "able"} <= adjectives  # head and satellite synsets
    assert {"galore", "ready to hand"} <= adjectives  # written "galore(ip)", "ready_to_hand(p)": markers dropped
    assert not any("(" in a for a in adjectives)
    assert all(word == word.lower() for word in nouns)


def test_plural_nouns_through_exceptions_and_morphy_suffixes(wordnet: WordNet) -> None:
    for plural in ("dogs", "women", "churches", "boxes", "berries", "mice", "geese", "Dogs"):
        assert wordnet.is_noun(plural), plural
    for word in ("quickly", "the", "xyzzys"):
        assert not wordnet.is_noun(word), word


def test_instance_hypernyms_of_wordnet_30(wordnet: WordNet) -> None:
    hypernyms = wordnet.instance_hypernyms()
    # two instance hypernyms each (general / lawyer, and President of the United States): the gloss decides
    assert hypernyms["George Washington"] == "president"
    assert hypernyms["Abraham Lincoln"] == "president"
    assert hypernyms["Albert Einstein"] == "physicist"
    assert hypernyms["Eiffel Tower"] == "tower"
    assert hypernyms["New York"] == "city"  # the city is its first sense, the state its second
    assert hypernyms["Mississippi"] == "river"
    assert "Barack Obama" not in hypernyms  # WordNet 3.0 predates him (he is in 3.1)
    assert "dog" not in hypernyms
