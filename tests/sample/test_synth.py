"""Tests of the synthetic ground-truth corpus (curate.sample.synth)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile

from curate.sample.synth import (
    BLOCKLIST_WORDS,
    COLOURS,
    NOISE_FRACTIONS,
    NOISE_KINDS,
    SHAPES,
    noise_counts,
    write_synth_corpus,
)

N = 300
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("synth")
    path = write_synth_corpus(out, N, seed=SEED)
    assert path == out / "samples.parquet"
    return out, pq.read_table(path).to_pylist()


def rows_of(rows: list[dict], kind: str) -> list[dict]:
    return [r for r in rows if r["noise"] == kind]


def decode(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def test_noise_kinds_and_fractions() -> None:
    assert NOISE_KINDS[0] == "clean"
    assert set(NOISE_KINDS[1:]) == set(NOISE_FRACTIONS)
    assert sum(NOISE_FRACTIONS.values()) == pytest.approx(0.39)


def test_schema_and_row_count(corpus) -> None:
    out, rows = corpus
    schema = pq.read_schema(out / "samples.parquet")
    assert schema.names == ["url", "caption", "noise", "true_caption", "dup_of", "sample_id", "caption_lang"]
    assert str(schema.field("sample_id").type) == "int64"
    assert len(rows) == N
    assert [r["sample_id"] for r in rows] == list(range(N))
    assert all(r["url"].startswith("images/") and r["caption"] for r in rows)


def test_label_counts_are_round_n_times_fraction(corpus) -> None:
    _, rows = corpus
    counts = {kind: len(rows_of(rows, kind)) for kind in NOISE_KINDS}
    assert counts == noise_counts(N)
    for kind, frac in NOISE_FRACTIONS.items():
        assert counts[kind] == round(N * frac)
    assert counts == {
        "clean": 183, "mismatched_caption": 18, "boilerplate_caption": 12, "boilerplate_suffix": 6,
        "blocklisted_caption": 6, "short_caption": 9,
        "non_english_caption": 12, "tiny_image": 9, "extreme_aspect": 9, "exact_duplicate": 9,
        "near_duplicate": 9, "broken_image": 9, "missing_image": 9,
    }


def test_noise_counts_small_n() -> None:
    for n in (1, 2, 5, 10, 33, 1000):
        counts = noise_counts(n)
        assert sum(counts.values()) == n and counts["clean"] >= 1
    assert noise_counts(1) == {"clean": 1, **dict.fromkeys(NOISE_FRACTIONS, 0)}


def test_clean_captions_describe_the_drawing(corpus) -> None:
    out, rows = corpus
    colour_words = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
    shape_words = re.compile(r"\b(" + "|".join([*SHAPES, *SHAPES.values()]) + r")\b")
    for r in rows_of(rows, "clean"):
        assert r["caption"] == r["true_caption"] and r["dup_of"] is None
        assert shape_words.search(r["caption"]), r["caption"]
        assert re.search(r"\b(plain|striped|dotted|noisy) background\b", r["caption"])
        named = set(colour_words.findall(r["caption"]))
        assert named, r["caption"]
        pixels = np.asarray(decode(out / r["url"]), dtype=np.int32).reshape(-1, 3)
        for colour in named:  # the named colour is really drawn
            dist = np.abs(pixels - np.array(COLOURS[colour])).max(axis=1)
            assert (dist < 45).mean() > 0.005, (r["url"], colour)


def test_clean_images_are_normal_sized(corpus) -> None:
    out, rows = corpus
    for r in rows_of(rows, "clean"):
        w, h = decode(out / r["url"]).size
        assert min(w, h) >= 256 and max(w, h) <= 512
        assert (out / r["url"]).stat().st_size > 5000  # LAION-5B's 5 KB floor


def test_tiny_images(corpus) -> None:
    out, rows = corpus
    for r in rows_of(rows, "tiny_image"):
        assert min(decode(out / r["url"]).size) < 200
        assert r["caption"] == r["true_caption"]


def test_extreme_aspect(corpus) -> None:
    out, rows = corpus
    for r in rows_of(rows, "extreme_aspect"):
        w, h = decode(out / r["url"]).size
        assert max(w, h) / min(w, h) > 3 and min(w, h) >= 200


def test_broken_images_fail_to_decode(corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)  # Pillow's default
    out, rows = corpus
    broken = rows_of(rows, "broken_image")
    assert broken
    for r in broken:
        assert (out / r["url"]).is_file() and r["true_caption"] is None
        with pytest.raises(Exception), Image.open(out / r["url"]) as im:  # noqa: B017 - any decode error
            im.load()


def test_missing_images_do_not_exist(corpus) -> None:
    out, rows = corpus
    for r in rows_of(rows, "missing_image"):
        assert not (out / r["url"]).exists() and r["true_caption"] is None


def test_exact_duplicates_repeat_an_earlier_clean_row(corpus) -> None:
    _, rows = corpus
    by_url = {r["url"]: r for r in rows if r["noise"] == "clean"}
    for r in rows_of(rows, "exact_duplicate"):
        original = by_url[r["dup_of"]]
        assert original["sample_id"] < r["sample_id"]
        assert (r["url"], r["caption"]) == (original["url"], original["caption"])


def test_near_duplicates_are_new_files_of_an_earlier_clean_image(corpus) -> None:
    out, rows = corpus
    by_url = {r["url"]: r for r in rows if r["noise"] == "clean"}
    for r in rows_of(rows, "near_duplicate"):
        original = by_url[r["dup_of"]]
        assert original["sample_id"] < r["sample_id"] and r["url"] != original["url"]
        assert r["true_caption"] == original["true_caption"]
        assert (out / r["url"]).read_bytes() != (out / original["url"]).read_bytes()
        copy, source = decode(out / r["url"]), decode(out / original["url"])
        assert min(copy.size) >= 200
        small = [np.asarray(im.resize((32, 32)), dtype=np.float32) for im in (copy, source)]
        assert np.abs(small[0] - small[1]).mean() < 20  # same picture, re-encoded / resized / cropped


def test_urls_unique_except_exact_duplicates(corpus) -> None:
    _, rows = corpus
    urls = [r["url"] for r in rows if r["noise"] != "exact_duplicate"]
    assert len(urls) == len(set(urls))


def test_caption_noise(corpus) -> None:
    _, rows = corpus
    for r in rows_of(rows, "mismatched_caption"):
        assert r["caption"] != r["true_caption"]
    for r in rows_of(rows, "short_caption"):
        assert len(r["caption"]) < 5 or len(r["caption"].split()) <= 2
    for r in rows_of(rows, "boilerplate_caption"):
        assert not re.search(r"\b(background|circles?|squares?|stars?)\b", r["caption"]), r["caption"]
    english = re.compile(r"\b(the|on|and|background|" + "|".join(COLOURS) + r")\b", re.IGNORECASE)
    for r in rows_of(rows, "non_english_caption"):
        assert len(r["caption"].split()) >= 5 and not english.search(r["caption"]), r["caption"]


def test_deterministic(tmp_path: Path) -> None:
    a = write_synth_corpus(tmp_path / "a", 60, seed=3).parent
    b = write_synth_corpus(tmp_path / "b", 60, seed=3).parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = write_synth_corpus(tmp_path / "c", 60, seed=4)
    assert c.read_bytes() != (a / "samples.parquet").read_bytes()


def test_reuse_skips_rewrite(tmp_path: Path) -> None:
    path = write_synth_corpus(tmp_path, 40, seed=1)
    state = json.loads((tmp_path / "synth.json").read_text())
    assert (state["n"], state["seed"]) == (40, 1)
    watched = [path, tmp_path / "synth.json", *sorted((tmp_path / "images").iterdir())[:3]]
    before = [p.stat().st_mtime_ns for p in watched]
    assert write_synth_corpus(str(tmp_path), 40, seed=1) == path
    assert [p.stat().st_mtime_ns for p in watched] == before


def test_rewrite_with_other_params_removes_stale_images(tmp_path: Path) -> None:
    write_synth_corpus(tmp_path, 60, seed=1)
    rows = pq.read_table(write_synth_corpus(tmp_path, 30, seed=2)).to_pylist()
    assert len(rows) == 30
    on_disk = {f"images/{p.name}" for p in (tmp_path / "images").iterdir()}
    expected = {r["url"] for r in rows if r["noise"] not in ("missing_image", "exact_duplicate")}
    assert on_disk == expected


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synth_corpus(tmp_path, 0)
    with pytest.raises(ValueError):
        write_synth_corpus(tmp_path, 10, seed=-1)


def test_boilerplate_suffix_is_a_true_caption_plus_boilerplate(corpus) -> None:
    """CC3M crops such boilerplate (Sharma et al. 2018 §3): the crop must give back the true caption."""
    _, rows = corpus
    suffixed = rows_of(rows, "boilerplate_suffix")
    assert suffixed
    for r in suffixed:
        assert r["caption"].startswith(r["true_caption"]) and r["caption"] != r["true_caption"]
        assert re.fullmatch(r" [-|(] .*|\s?\(.*\)", r["caption"][len(r["true_caption"]):]), r["caption"]


def test_blocklisted_captions_carry_one_listed_word(corpus) -> None:
    out, rows = corpus
    listed = (out / "blocklists" / "en").read_text().split()
    assert listed == list(BLOCKLIST_WORDS)
    word = re.compile(r"\b(" + "|".join(BLOCKLIST_WORDS) + r")\b", re.IGNORECASE)
    blocked = rows_of(rows, "blocklisted_caption")
    assert blocked
    for r in blocked:
        assert len(word.findall(r["caption"])) == 1, r["caption"]
        assert r["true_caption"].lower() in r["caption"].lower()
    for r in rows:
        if r["noise"] != "blocklisted_caption":
            assert not word.search(r["caption"]), r


def test_caption_languages_are_labelled(corpus) -> None:
    _, rows = corpus
    langs = {r["noise"]: set() for r in rows}
    for r in rows:
        langs[r["noise"]].add(r["caption_lang"])
    assert langs["non_english_caption"] <= {"de", "fr", "es", "it", "pt"} and len(langs["non_english_caption"]) >= 3
    assert langs["boilerplate_caption"] == langs["short_caption"] == {None}
    for kind in set(langs) - {"non_english_caption", "boilerplate_caption", "short_caption"}:
        assert langs[kind] == {"en"}, kind
