"""ALIGN's alt-text rules (curate.stages.align): unigram bounds, and alt-text/image frequencies over
the whole input with hand-computed counts; then align_caption + align_frequency + rare_words in a
real ``curate run``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UNIT
from curate.stages.align import (
    IMAGE,
    TEXT,
    AlignCaptionFilter,
    AlignCaptionParams,
    AlignFrequencyFilter,
    AlignFrequencyParams,
    combined_keys,
    image_hashes,
    text_hashes,
)
from curate.stages.dedup import url_hashes
from curate.stages.registry import stage_kinds
from tests.global_stage import reduce_in_process

TWENTY = " ".join(f"w{i}" for i in range(20))


def rows(units_rows: list[tuple[int, int, str, str | None]], orig_hash: list[int | None] | None = None) -> pa.Table:
    """(unit, row, url, caption) per row, with the bookkeeping columns read_unit adds."""
    units, positions, urls, captions = zip(*units_rows, strict=True) if units_rows else ((), (), (), ())
    n = len(units)
    columns = {"uid": pa.array([f"{u:016x}{r:016x}" for u, r in zip(units, positions, strict=True)], pa.string()),
               "url": pa.array(urls, pa.string()), "caption": pa.array(captions, pa.string())}
    if orig_hash is not None:
        columns["orig_hash"] = pa.array(orig_hash, pa.int64())
    nulls = pa.nulls(n, pa.string())
    return pa.table({**columns, UNIT: pa.array(units, pa.int32()), ROW: pa.array(positions, pa.int32()),
                     DROP_STAGE: nulls, DROP_REASON: nulls, DROP_DETAIL: nulls})


def ledger(stage, table: pa.Table) -> list[tuple[int, int, str | None, str | None]]:
    """(unit, row, reason, detail) of every row after the engine applies ``stage``."""
    out = apply_stage(stage, table).sort_by([(UNIT, "ascending"), (ROW, "ascending")])
    assert out.column(DROP_STAGE).to_pylist() == [stage.name if r else None for r in out.column(DROP_REASON).to_pylist()]
    return list(zip(out.column(UNIT).to_pylist(), out.column(ROW).to_pylist(), out.column(DROP_REASON).to_pylist(),
                    out.column(DROP_DETAIL).to_pylist(), strict=True))


# -- align_caption --------------------------------------------------------------------------------


def test_caption_defaults_are_alignss_and_it_is_registered() -> None:
    assert AlignCaptionParams().model_dump() == {"min_unigrams": 3, "max_unigrams": 20}
    assert AlignFrequencyParams().model_dump() == {"max_images_per_text": 10, "max_texts_per_image": 1000}
    assert stage_kinds()["align_caption"] is AlignCaptionFilter
    assert stage_kinds()["align_frequency"] is AlignFrequencyFilter


def test_caption_unigram_bounds_are_inclusive() -> None:
    captions = ["two words", "three words here", None, "", "  a\tb \n c  ", TWENTY, TWENTY + " w20", "x,y z"]
    table = rows([(0, i, f"http://h/{i}", c) for i, c in enumerate(captions)])
    stage = AlignCaptionFilter(AlignCaptionParams())
    assert stage.process(table).column("align_unigrams").to_pylist() == [2, 3, 0, 0, 3, 20, 21, 2]
    assert stage.process(table).schema.field("align_unigrams").type == pa.int32()
    assert ledger(stage, table) == [
        (0, 0, "caption_too_few_unigrams", "unigrams=2"),
        (0, 1, None, None),
        (0, 2, "caption_too_few_unigrams", "unigrams=0"),  # a missing caption counts as empty
        (0, 3, "caption_too_few_unigrams", "unigrams=0"),
        (0, 4, None, None),
        (0, 5, None, None),
        (0, 6, "caption_too_many_unigrams", "unigrams=21"),
        (0, 7, "caption_too_few_unigrams", "unigrams=2"),  # punctuation does not split a unigram
    ]


@pytest.mark.parametrize(("params", "message"), [
    ({"min_unigrams": 21}, "stages[0]: min_unigrams 21 is above max_unigrams 20"),
    ({"max_unigrams": -1}, "stages[0].max_unigrams: Input should be greater than or equal to 0"),
])
def test_caption_bad_params_are_one_line_spec_errors(tmp_path: Path, params: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": str(tmp_path / "in.parquet")}, "stages": [{"stage": "align_caption", **params}]})
    assert str(err.value) == f"<dict>: {message}"


# -- align_frequency ------------------------------------------------------------------------------


def test_text_normalisation_lower_cases_and_collapses_whitespace() -> None:
    hashes = text_hashes(pa.array(["Red Car", "red  car", " RED\u00a0CAR\t", "red cars", None, "", "   "]))
    assert hashes[0] == hashes[1] == hashes[2] != hashes[3]
    assert hashes[4] == hashes[5] == hashes[6]  # a missing caption is ""


def test_image_is_the_content_hash_where_present_else_the_normalised_url() -> None:
    table = rows([(0, 0, "http://h/a.jpg", "x"), (0, 1, "HTTP://H/a.jpg#f", "x"), (0, 2, "http://h/b.jpg", "x")],
                 orig_hash=[-5, None, -5])
    by_url = url_hashes(pa.array(["http://h/a.jpg"]))[0]
    assert list(image_hashes(table)) == [2**64 - 5, by_url, 2**64 - 5]
    assert list(image_hashes(table.drop_columns(["orig_hash"]))) == [by_url, by_url, url_hashes(pa.array(["http://h/b.jpg"]))[0]]


def test_observe_writes_two_summary_rows_a_sample_of_25_bytes_each() -> None:
    table = rows([(3, 7, "http://h/a.jpg", "A cat"), (3, 8, "http://h/b.jpg", "a cat")])
    summary = AlignFrequencyFilter(AlignFrequencyParams()).observe(table)
    assert summary.column_names == ["key", "kind", "other", UNIT, ROW]
    assert summary.nbytes == 2 * 2 * 25
    texts, images = text_hashes(table.column("caption")), image_hashes(table)
    assert summary.column("kind").to_pylist() == [TEXT, TEXT, IMAGE, IMAGE]
    assert summary.column("key").to_pylist() == [*combined_keys(TEXT, texts), *combined_keys(IMAGE, images)]
    assert summary.column("other").to_pylist() == [*images, *texts]
    assert summary.column(ROW).to_pylist() == [7, 8, 7, 8] and set(summary.column(UNIT).to_pylist()) == {3}
    assert len(set(summary.column("key").to_pylist())) == 3  # one text key, two image keys
    assert combined_keys(TEXT, texts[:1])[0] != combined_keys(IMAGE, texts[:1])[0]  # the kind is part of the key


def frequency(batches: list[pa.Table], root: Path, partitions: int = 3, **params) -> tuple[AlignFrequencyFilter, int]:
    stage = AlignFrequencyFilter(AlignFrequencyParams(**params))
    return stage, reduce_in_process(stage, batches, root, partitions)


#: 2 units; limits of 2 images per text and 2 texts per image. Hand counts:
#: "red car" is on images a, b, c, d (4 > 2); image d carries "blue sky", "green", "sun", "red car"
#: (4 > 2); "blue sky" is on d, e (2); image e carries "blue sky", "moon" (2); image a "red car" once.
POOL = [
    [(0, 0, "http://h/a.jpg", "Red car"), (0, 1, "http://h/b.jpg", "red  car"), (0, 2, "http://h/c.jpg", "RED CAR"),
     (0, 3, "http://h/a.jpg", "red car")],
    [(1, 0, "http://h/d.jpg", "blue sky"), (1, 1, "http://h/d.jpg", "Green"), (1, 2, "http://h/d.jpg", "sun"),
     (1, 3, "http://h/e.jpg", "blue sky"), (1, 4, "http://h/e.jpg", "moon"), (1, 5, "HTTP://H/d.jpg", "red car")],
]
EXPECTED = [
    (0, 0, "alt_text_shared_by_many_images", "images=4"),
    (0, 1, "alt_text_shared_by_many_images", "images=4"),
    (0, 2, "alt_text_shared_by_many_images", "images=4"),
    (0, 3, "alt_text_shared_by_many_images", "images=4"),
    (1, 0, "image_has_many_alt_texts", "alt_texts=4"),
    (1, 1, "image_has_many_alt_texts", "alt_texts=4"),
    (1, 2, "image_has_many_alt_texts", "alt_texts=4"),
    (1, 3, None, None),
    (1, 4, None, None),
    (1, 5, "alt_text_shared_by_many_images", "images=4"),  # over both limits: the text rule is first
]


@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_frequency_counts_distinct_images_per_text_and_texts_per_image(tmp_path: Path, partitions: int) -> None:
    batches = [rows(unit) for unit in POOL]
    stage, verdicts = frequency(batches, tmp_path, partitions, max_images_per_text=2, max_texts_per_image=2)
    assert verdicts == 8  # one (merged) verdict row per dropped row
    assert ledger(stage, batches[0]) + ledger(stage, batches[1]) == EXPECTED
    scored = stage.process(batches[1])
    assert scored.column("align_text_images").to_pylist() == [None, None, None, None, None, 4]
    assert scored.column("align_image_texts").to_pylist() == [4, 4, 4, None, None, 4]  # both verdicts of row 5 arrive


def test_frequency_limits_are_exclusive(tmp_path: Path) -> None:
    stage, verdicts = frequency([rows(unit) for unit in POOL], tmp_path, max_images_per_text=4, max_texts_per_image=4)
    assert verdicts == 0
    assert all(reason is None for *_, reason, _ in ledger(stage, rows(POOL[1])))


def test_after_download_an_image_is_its_content(tmp_path: Path) -> None:
    """Three URLs serving one file are one image: their shared alt-text is within 2 images.
    Before download (no orig_hash) they are three images."""
    pool = [(0, i, f"http://mirror{i}.example/logo.png", "Company logo") for i in range(3)]
    after, _ = frequency([rows(pool, orig_hash=[77, 77, 77])], tmp_path / "after", max_images_per_text=2)
    assert ledger(after, rows(pool, orig_hash=[77, 77, 77])) == [(0, i, None, None) for i in range(3)]
    before, _ = frequency([rows(pool)], tmp_path / "before", max_images_per_text=2)
    assert ledger(before, rows(pool)) == [(0, i, "alt_text_shared_by_many_images", "images=3") for i in range(3)]


def test_one_image_with_many_alt_texts_by_content(tmp_path: Path) -> None:
    pool = [(0, i, f"http://h/{i}.jpg", f"caption {i}") for i in range(4)]
    stage, _ = frequency([rows(pool, orig_hash=[9, 9, 9, None])], tmp_path, max_texts_per_image=2)
    assert ledger(stage, rows(pool, orig_hash=[9, 9, 9, None])) == [
        (0, 0, "image_has_many_alt_texts", "alt_texts=3"), (0, 1, "image_has_many_alt_texts", "alt_texts=3"),
        (0, 2, "image_has_many_alt_texts", "alt_texts=3"), (0, 3, None, None)]  # no content hash: its URL


def test_missing_captions_count_as_one_empty_text(tmp_path: Path) -> None:
    pool = [(0, 0, "http://h/0.jpg", None), (0, 1, "http://h/1.jpg", ""), (0, 2, "http://h/2.jpg", "  "),
            (0, 3, "http://h/3.jpg", "a real caption")]
    stage, _ = frequency([rows(pool)], tmp_path, max_images_per_text=2)
    assert ledger(stage, rows(pool)) == [(0, i, "alt_text_shared_by_many_images", "images=3") for i in range(3)] + [
        (0, 3, None, None)]


def test_frequency_on_an_empty_input(tmp_path: Path) -> None:
    stage, verdicts = frequency([rows([])], tmp_path)
    assert verdicts == 0
    assert ledger(stage, rows([(0, 0, "http://h/x", "x")])) == [(0, 0, None, None)]


# -- the three ALIGN stages in a real run ---------------------------------------------------------


def test_align_stages_end_to_end(tmp_path: Path, ray_session) -> None:
    """40 rows in 4 units through align_caption, align_frequency (2 images per text, 2 texts per
    image) and rare_words (min_count 2); hand-counted ledger."""
    from curate import run_pipeline

    data: list[tuple[str, str | None]] = []
    for i in range(30):  # 30 ordinary rows: 10 images, each with one caption (3 rows); every word >= 3 times
        data.append((f"http://h/img{i % 10}.jpg", f"a photo of the {['red', 'blue', 'green'][i % 10 % 3]} {i % 10} dog"))
    data += [
        ("http://h/x1.jpg", "too short"),                              # 30: align_caption, 2 unigrams
        ("http://h/x2.jpg", " ".join(["word"] * 21)),                  # 31: align_caption, 21 unigrams
        ("http://h/s1.jpg", "Shared Alt Text"),                        # 32-34: one text on 3 images
        ("http://h/s2.jpg", "shared alt  text"),
        ("http://h/s3.jpg", "shared alt text"),
        ("http://h/m.jpg", "a photo of the blue 1 dog"),              # 35: img1's caption (2 images), on "m" ...
        ("http://h/m.jpg", "the second alt text"),                     # 36
        ("http://h/m.jpg", "a third alt text"),                        # 37: ... carries 3 texts
        ("http://h/z.jpg", "a photo of the zebra dog"),                # 38: "zebra" occurs once
        ("http://h/n.jpg", None),                                      # 39: missing caption: 0 unigrams
    ]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"url": [u for u, _ in data], "caption": pa.array([c for _, c in data], pa.string())}), pool)
    spec = {"name": "align", "input": {"path": str(pool), "rows_per_unit": 10},
            "stages": [{"stage": "align_caption"},
                       {"stage": "align_frequency", "max_images_per_text": 2, "max_texts_per_image": 2},
                       {"stage": "rare_words", "min_count": 2}]}
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    rejects = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "rejects").glob("*.parquet"))])
    drops = sorted((r["row"], r["stage"], r["reason"], r["detail"]) for r in rejects.to_pylist())
    assert drops == [
        (30, "align_caption", "caption_too_few_unigrams", "unigrams=2"),
        (31, "align_caption", "caption_too_many_unigrams", "unigrams=21"),
        (32, "align_frequency", "alt_text_shared_by_many_images", "images=3"),
        (33, "align_frequency", "alt_text_shared_by_many_images", "images=3"),
        (34, "align_frequency", "alt_text_shared_by_many_images", "images=3"),
        (35, "align_frequency", "image_has_many_alt_texts", "alt_texts=3"),
        (36, "align_frequency", "image_has_many_alt_texts", "alt_texts=3"),
        (37, "align_frequency", "image_has_many_alt_texts", "alt_texts=3"),
        (38, "rare_words", "rare_word", "word=zebra rare_words=1"),
        (39, "align_caption", "caption_too_few_unigrams", "unigrams=0"),
    ]
    assert result.funnel.kept == 30
    shards = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "shards").glob("*.parquet"))])
    assert {"align_unigrams", "align_text_images", "align_image_texts", "rare_word", "rare_word_count"} <= set(
        shards.column_names)
    assert shards.column("rare_word_count").to_pylist() == [0] * 30
    assert shards.column("align_text_images").null_count == shards.column("align_image_texts").null_count == 30
    again = run_pipeline(spec, output=str(tmp_path / "run"))  # the state under state/ is reused
    assert again.units_run == 0 and again.funnel.to_json() == result.funnel.to_json()

