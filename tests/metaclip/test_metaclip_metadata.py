"""MetaCLIP metadata: reading ours and MetaCLIP's files; building one (n-gram counts, log2 PMI,
sources, order) through the library and ``curate metaclip build-metadata``."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.errors import InputError
from curate.metaclip.metadata import bigram_pmi, build_metadata, count_ngrams, load_metadata

WORDNET = Path("/usr/share/wordnet")


def test_count_ngrams_splits_punctuation_and_cjk() -> None:
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    tokens = count_ngrams(["a dog, a cat", "A dog!", "猫が好き", "don't"], unigrams, bigrams)
    # Punctuation is a token of its own, never counted, and breaks bigrams; each CJK character
    # is a token (hiragana is not in MetaCLIP's ranges, so "が" and "き" are runs of their own).
    assert unigrams == Counter({"a": 2, "dog": 2, "cat": 1, "A": 1, "猫": 1, "が": 1, "好": 1, "き": 1, "don": 1, "t": 1})
    assert bigrams == Counter({("a", "dog"): 1, ("a", "cat"): 1, ("A", "dog"): 1, ("猫", "が"): 1, ("が", "好"): 1,
                               ("好", "き"): 1})
    assert tokens == 12


def test_pmi_is_nltk_log2() -> None:
    # log2(c(ab) * N / (c(a) c(b))) = log2(2 * 16 / (2 * 4)) = 2
    assert bigram_pmi(Counter({("a", "b"): 2}), Counter({"a": 2, "b": 4}), 16) == {("a", "b"): pytest.approx(2.0)}


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("red barn\n" * 3 + "red car\nblue sky, red barn\n", encoding="utf-8")
    return path


def test_build_metadata_sources_and_order(tmp_path) -> None:
    titles = tmp_path / "titles.txt"
    titles.write_text("Red Barn\n\nblue sky\n  \n", encoding="utf-8")
    out = tmp_path / "metadata.tsv"
    # N = 12 tokens; red 5, barn 4, car/blue/sky 1. PMI: red barn = red car = log2(2.4) = 1.26,
    # blue sky = log2(12) = 3.58 ("sky, red" is broken by the comma).
    summary = build_metadata(str(out), ["barn", "red", "Barack Obama", "!", ""], [str(_corpus(tmp_path))], "caption",
                             str(titles), min_count=2, min_pmi=1.5)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:100] == [f"{n}\tnumber" for n in range(100)]
    assert lines[100:] == ["barn\twordnet,unigram", "red\twordnet,unigram", "Barack Obama\twordnet",
                           "blue sky\tbigram,title", "Red Barn\ttitle"]
    assert summary["entries"] == 105 and summary["corpus_tokens"] == 12
    assert summary["sources"] == {
        "number": {"given": 100, "new": 100, "left_out": 0},
        "wordnet": {"given": 5, "new": 3, "left_out": 2},  # "!" and "" are never entries (MetaCLIP)
        "unigram": {"given": 2, "new": 0, "left_out": 0},
        "bigram": {"given": 1, "new": 1, "left_out": 0},
        "title": {"given": 2, "new": 1, "left_out": 0},
    }
    assert load_metadata(str(out))[100:] == ["barn", "red", "Barack Obama", "blue sky", "Red Barn"]


def test_bigram_threshold_default_needs_a_wikipedia_sized_corpus(tmp_path) -> None:
    out = tmp_path / "m.tsv"
    summary = build_metadata(str(out), None, [str(_corpus(tmp_path))], "caption", None, min_count=100, min_pmi=30)
    assert summary["sources"]["bigram"]["given"] == 0  # max PMI here is log2(12) < 30
    assert math.log2(12) < 30
    assert len(out.read_text().splitlines()) == 100


def test_parquet_corpus_column(tmp_path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"TEXT": ["red barn", None, "red barn"]}), path)
    out = tmp_path / "m.tsv"
    summary = build_metadata(str(out), None, [str(path)], "TEXT", None, min_count=2, min_pmi=100)
    assert summary["corpus_tokens"] == 4
    assert out.read_text().splitlines()[100:] == ["barn\tunigram", "red\tunigram"]  # a tie: by text
    with pytest.raises(InputError, match=r"c.parquet: no column 'caption' \(has: TEXT; pass --column\)$"):
        build_metadata(str(out), None, [str(path)], "caption", None, min_count=2, min_pmi=100)


def test_cli_build_metadata_missing_corpus_is_one_line(tmp_path, capsys) -> None:
    code = main(["metaclip", "build-metadata", "--out", str(tmp_path / "m.tsv"), "--no-wordnet", "--corpus",
                 str(tmp_path / "nope.txt")])
    assert code == 2
    assert capsys.readouterr().err == f"curate: error: {tmp_path / 'nope.txt'}: no such corpus file\n"
    assert not (tmp_path / "m.tsv").exists()


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="needs WordNet dict files (apt-get install wordnet-base)")
def test_cli_build_metadata_with_wordnet(tmp_path, capsys) -> None:
    out = tmp_path / "m.tsv"
    code = main(["metaclip", "build-metadata", "--out", str(out), "--wordnet", str(WORDNET), "--corpus",
                 str(_corpus(tmp_path)), "--min-count", "5", "--min-pmi", "3"])
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    sources = dict(line.split("\t") for line in lines)
    assert sources["dog"] == "wordnet" and sources["George Washington"] == "wordnet"
    assert sources["red"] == "wordnet,unigram" and sources["blue sky"] == "wordnet,bigram"
    assert len(lines) > 100_000
    assert f"wrote {len(lines):,} entries to {out}" in capsys.readouterr().err


# -- reading ---------------------------------------------------------------------------------------


def test_load_metaclip_json_list_and_object(tmp_path) -> None:
    (tmp_path / "metadata.json").write_text(json.dumps(["dog", "hot dog", "猫"]), encoding="utf-8")
    assert load_metadata(str(tmp_path / "metadata.json")) == ["dog", "hot dog", "猫"]
    (tmp_path / "fr.json").write_text(json.dumps({"chien": "w", "0": ""}), encoding="utf-8")  # MetaCLIP 2 per language
    assert load_metadata(str(tmp_path / "fr.json")) == ["chien", "0"]
    (tmp_path / "list.txt").write_text('["a", "b"]', encoding="utf-8")  # detected by content
    assert load_metadata(str(tmp_path / "list.txt")) == ["a", "b"]


def test_load_ours_and_plain_text(tmp_path) -> None:
    (tmp_path / "m.tsv").write_text("dog\twordnet\r\nhot dog\tbigram,title\r\n\nNew York\n", encoding="utf-8")
    assert load_metadata(str(tmp_path / "m.tsv")) == ["dog", "hot dog", "New York"]


@pytest.mark.parametrize(("name", "body", "message"), [
    ("m.json", '["a", 1]', "m.json: expected a JSON list of strings (MetaCLIP's metadata.json)"),
    ("m.json", '["a",', "m.json: not valid JSON metadata (line 1: Expecting value)"),
    ("m.tsv", "a\tx\nb\na\ty\n", "m.tsv: entry 'a' repeats (ids 0 and 2); each entry must appear once"),
    ("m.tsv", "\n\n", "m.tsv: the metadata holds no entry"),
])
def test_bad_metadata_is_one_line(tmp_path, name, body, message) -> None:
    (tmp_path / name).write_text(body, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_metadata(str(tmp_path / name))
    assert str(err.value) == f"{tmp_path}/{message}"


def test_missing_metadata_file(tmp_path) -> None:
    with pytest.raises(InputError, match=r"nope.json: no such metadata file \(build one with `curate metaclip "
                                         r"build-metadata`, or give MetaCLIP's metadata.json\)$"):
        load_metadata(str(tmp_path / "nope.json"))
