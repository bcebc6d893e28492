"""Exact image dedup (curate.stages.image_dedup): observe -> reduce -> decide on tables, with
exact verdicts for both hashes and both keep policies."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.schema import ROW, UNIT, compute_uids
from curate.stages.image_dedup import ImageExactDedupFilter, ImageExactDedupParams

UIDS = compute_uids(pa.array([f"http://x/{i}" for i in range(8)]), pa.array([""] * 8)).to_pylist()


def rows(spec: list[tuple[int, int, int, int, int, int, int]]) -> pa.Table:
    """spec: (unit, row, uid index, pixel_hash, orig_hash, (orig_width, orig_height), orig_bytes)."""
    units, positions, uid_index, pixel, orig, sides, nbytes = zip(*spec, strict=True)
    return pa.table({
        UNIT: pa.array(units, pa.int32()),
        ROW: pa.array(positions, pa.int32()),
        "uid": pa.array([UIDS[i] for i in uid_index], pa.string()),
        "pixel_hash": pa.array(pixel, pa.int64()),
        "orig_hash": pa.array(orig, pa.int64()),
        "orig_width": pa.array([s[0] for s in sides], pa.int32()),
        "orig_height": pa.array([s[1] for s in sides], pa.int32()),
        "orig_bytes": pa.array(nbytes, pa.int64()),
    })


def stage(by: str = "pixels", keep: str = "first") -> ImageExactDedupFilter:
    return ImageExactDedupFilter(ImageExactDedupParams(by=by, keep=keep))


def verdicts(dedup: ImageExactDedupFilter, units: list[pa.Table]) -> dict[tuple[int, int], str]:
    """(unit, row) -> survivor uid, from the observe summaries of all units reduced as one partition."""
    summary = pa.concat_tables([dedup.observe(unit) for unit in units])
    out = dedup.reduce(summary)
    assert out.schema == pa.schema([(UNIT, pa.int32()), (ROW, pa.int32()), ("dup_of", pa.string())])
    return {(u, r): d for u, r, d in zip(*(out.column(c).to_pylist() for c in (UNIT, ROW, "dup_of")), strict=True)}


# unit, row, uid, pixel_hash, orig_hash, (orig_width, orig_height), orig_bytes
UNIT0 = rows([
    (0, 0, 0, 11, 100, (64, 64), 5000),
    (0, 1, 1, 22, 200, (32, 32), 900),
    (0, 2, 2, 11, 101, (128, 128), 7000),   # same pixels as row 0, another file, larger
])
UNIT1 = rows([
    (1, 0, 3, 22, 200, (32, 32), 900),      # the same file as unit 0 row 1
    (1, 1, 4, 11, 100, (128, 128), 7000),   # the same file as unit 0 row 0 (as fetched), larger than it
    (1, 2, 5, 33, 300, (10, 10), 50),
])


def test_by_pixels_keep_first() -> None:
    assert verdicts(stage(), [UNIT0, UNIT1]) == {(0, 2): UIDS[0], (1, 0): UIDS[1], (1, 1): UIDS[0]}


def test_by_bytes_keep_first() -> None:
    assert verdicts(stage(by="bytes"), [UNIT0, UNIT1]) == {(1, 0): UIDS[1], (1, 1): UIDS[0]}


def test_keep_largest_ties_by_bytes_then_input_order() -> None:
    # pixels 11: (0,2) and (1,1) are both 128x128 and 7000 bytes -> the earlier, (0,2), survives
    assert verdicts(stage(keep="largest"), [UNIT0, UNIT1]) == {(0, 0): UIDS[2], (1, 1): UIDS[2], (1, 0): UIDS[1]}
    same_area = rows([(0, 0, 0, 7, 1, (100, 10), 10), (0, 1, 1, 7, 2, (10, 100), 20), (0, 2, 2, 7, 3, (20, 50), 20)])
    assert verdicts(stage(keep="largest"), [same_area]) == {(0, 0): UIDS[1], (0, 2): UIDS[1]}
    assert verdicts(stage(by="bytes", keep="largest"), [UNIT0, UNIT1]) == {(0, 0): UIDS[4], (1, 0): UIDS[1]}


def test_the_order_of_the_summaries_does_not_matter() -> None:
    for by in ("pixels", "bytes"):
        for keep in ("first", "largest"):
            assert verdicts(stage(by, keep), [UNIT1, UNIT0]) == verdicts(stage(by, keep), [UNIT0, UNIT1])


def test_rows_without_an_image_are_never_duplicates() -> None:
    table = UNIT0.set_column(3, "pixel_hash", pa.array([None, None, 11], pa.int64()))
    assert stage().observe(table).num_rows == 1
    assert verdicts(stage(), [table]) == {}


def test_empty_input() -> None:
    empty = UNIT0.slice(0, 0)
    assert stage().observe(empty).num_rows == 0
    assert verdicts(stage(), [empty]) == {}
    assert stage(keep="largest").reduce(stage(keep="largest").observe(empty)).num_rows == 0


def test_decide_drops_with_the_survivor_as_detail() -> None:
    scored = UNIT1.append_column("dup_of", pa.array([UIDS[1], UIDS[0], None], pa.string()))
    decision = stage().decide(scored)
    assert decision.keep.to_pylist() == [False, False, True]
    assert decision.reason.to_pylist() == ["duplicate_image", "duplicate_image", None]
    assert decision.detail.to_pylist() == [UIDS[1], UIDS[0], None]


def test_contract() -> None:
    dedup = stage()
    assert dedup.key == ("hash",) and dedup.writes == ("dup_of",) and dedup.verdict_types == {"dup_of": pa.string()}
    assert dedup.reads == ("uid", "pixel_hash") and stage("bytes", "largest").reads == (
        "uid", "orig_hash", "orig_width", "orig_height", "orig_bytes")
    assert set(dedup.observe(UNIT0).column_names) >= {"hash", UNIT, ROW}


@pytest.mark.parametrize(("params", "problem"), [({"by": "phash"}, "by"), ({"keep": "last"}, "keep")])
def test_params_are_checked(params, problem) -> None:
    from curate.config import load_spec
    from curate.errors import ConfigError

    spec = {"input": {"path": "in.parquet"}, "stages": [{"stage": "download"}, {"stage": "image_exact_dedup", **params}]}
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert info.value.key == f"stages[1].{problem}"


def test_after_download_end_to_end(tmp_path, ray_session) -> None:
    """download -> image_exact_dedup on a served directory: one picture as a plain PNG, the same
    pixels with a text chunk, an identical copy under another name, and a larger version of it."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image, PngImagePlugin

    from curate import run_pipeline

    site = tmp_path / "site"
    site.mkdir()
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8))
    other = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), np.uint8))

    def png(image: Image.Image, text: str | None = None) -> bytes:
        info = PngImagePlugin.PngInfo()
        if text:
            info.add_text("Comment", text)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", pnginfo=info)
        return buffer.getvalue()

    files = {"a.png": png(picture), "b.png": png(picture, "mirror"), "c.png": png(picture), "d.png": png(other)}
    for name, body in files.items():
        (site / name).write_bytes(body)
    names = ["a.png", "d.png", "b.png", "c.png"]
    pq.write_table(pa.table({"url": names, "caption": [f"a picture called {n}" for n in names]}), tmp_path / "in.parquet")
    spec = {"input": {"path": str(tmp_path / "in.parquet"), "serve": str(site), "rows_per_unit": 2},
            "stages": [{"stage": "download"}, {"stage": "image_exact_dedup"}],
            "output": {"image_size": 40, "resize_mode": "no", "image_format": "png"}}
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "shards").glob("*.parquet"))])
    assert sorted(kept.column("url").to_pylist()) == ["a.png", "d.png"]
    survivor = kept.filter(pa.compute.equal(kept.column("url"), "a.png")).column("uid")[0].as_py()
    ledger = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "rejects").glob("*.parquet"))])
    assert sorted((r["stage"], r["reason"], r["detail"]) for r in ledger.to_pylist()) == [
        ("image_exact_dedup", "duplicate_image", survivor)] * 2
    assert result.funnel.kept == 2
