"""``curate show``: kept rows, ledger rows by stage and reason, one uid wherever it went, the
contact sheet (``--open``); bounded reads; one-line errors. On one real run with downloads from
a loopback server (module fixture), whose uids are the input's own."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.cli import main
from curate.stats.contact_sheet import NO_IMAGE, TILE_H, TILE_W, tile_centre


def uid(i: int) -> str:
    return f"{i:032x}"


# row: (uid, picture (colour, width, height) or None for a URL that is not served, caption)
ROWS = [
    (uid(1), ((255, 0, 0), 256, 256), "a red square on white"),
    (uid(2), ((0, 0, 0), 256, 256), "no"),  # datacomp_caption: caption_too_short (chars=2)
    (uid(3), ((0, 255, 0), 100, 100), "a small green square"),  # datacomp_image: image_too_small
    (uid(4), None, "a blue square nowhere"),  # download: http_404
    (uid(5), ((255, 255, 0), 256, 256), "a yellow square here"),
    (uid(6), ((255, 0, 255), 800, 200), "a wide magenta strip"),  # datacomp_image: aspect_ratio_too_large
    (uid(7), ((0, 255, 255), 256, 256), "a cyan square here"),
    (uid(8), ((255, 128, 0), 120, 120), "a small orange square"),  # datacomp_image: image_too_small
    (uid(1), ((0, 0, 255), 256, 256), "the same uid again"),  # read: duplicate_uid (row 0 keeps it)
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_session) -> Path:
    from curate.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("show")
    served = root / "served"
    served.mkdir()
    for index, (_, picture, _) in enumerate(ROWS):
        if picture is not None:
            colour, width, height = picture
            Image.new("RGB", (width, height), colour).save(served / f"{index}.png")
    pq.write_table(pa.table({"uid": [r[0] for r in ROWS], "url": [f"{i}.png" for i in range(len(ROWS))],
                             "caption": [r[2] for r in ROWS]}), root / "pairs.parquet")
    spec = {"name": "show", "input": {"path": str(root / "pairs.parquet"), "serve": str(served), "uid_column": "uid",
                                      "rows_per_unit": 3},
            "stages": [{"stage": "datacomp_caption"}, {"stage": "download", "timeout": 20, "threads": 2},
                       {"stage": "datacomp_image"}],
            "output": {"samples_per_shard": 2, "image_size": 64, "image_format": "jpg"}}
    return run_pipeline(spec, output=str(root / "run")).run_dir


def show(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["show", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unit_files(run: Path, unit: int) -> list[str]:
    return sorted(json.loads((run / "stats" / "units" / f"{unit:05d}.json").read_text())["files"])


def shard_of(run: Path, unit: int) -> str:
    (parquet,) = [f for f in unit_files(run, unit) if f.startswith("shards/") and f.endswith(".parquet")]
    return parquet


def unreadable_copy(run: Path, to: Path, units: list[int]) -> Path:
    """A copy of the run whose ``units`` have every parquet (shards and ledger) replaced by junk."""
    shutil.copytree(run, to)
    for unit in units:
        for name in unit_files(run, unit):
            if name.endswith(".parquet"):
                (to / name).write_bytes(b"not parquet")
    return to


def shown(capsys, *argv: str) -> list[dict]:
    code, out, err = show(capsys, *argv, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def verdicts(rows: list[dict]) -> list[tuple]:
    return [(r["uid"], r["stage"], r["reason"], r["detail"], r["url"], r["caption"]) for r in rows]


def test_kept_rows_by_default_in_input_order(capsys, run: Path) -> None:
    rows = shown(capsys, run, "-n", "10")
    assert verdicts(rows) == [(uid(1), None, None, None, "0.png", "a red square on white"),
                              (uid(5), None, None, None, "4.png", "a yellow square here"),
                              (uid(7), None, None, None, "6.png", "a cyan square here")]
    assert [r["file"] for r in rows] == [shard_of(run, unit) for unit in range(3)]  # one shard each; indices by commit order
    assert (rows[0]["scores"]["orig_width"], rows[0]["scores"]["width"], rows[0]["scores"]["orig_format"]) == (256, 64, "png")

    code, out, _ = show(capsys, run, "-n", "2")
    lines = out.splitlines()
    tar0, tar1 = (shard_of(run, unit).removesuffix(".parquet") + ".tar" for unit in range(2))
    assert code == 0 and [line for line in lines if not line.startswith("  scores")] == [
        f"kept     {uid(1)}  {tar0}", "  url      0.png", "  caption  a red square on white",
        f"kept     {uid(5)}  {tar1}", "  url      4.png", "  caption  a yellow square here",
        "2 of 3 kept rows"]
    assert "orig_width=256 orig_height=256" in lines[3]


def test_ledger_rows_of_a_reason_and_of_a_stage(capsys, run: Path) -> None:
    assert verdicts(shown(capsys, run, "--reason", "image_too_small")) == [
        (uid(3), "datacomp_image", "image_too_small", "short_side=100", "2.png", "a small green square"),
        (uid(8), "datacomp_image", "image_too_small", "short_side=120", "7.png", "a small orange square")]
    assert verdicts(shown(capsys, run, "--stage", "datacomp_image")) == [
        (uid(3), "datacomp_image", "image_too_small", "short_side=100", "2.png", "a small green square"),
        (uid(6), "datacomp_image", "aspect_ratio_too_large", "aspect_ratio=4", "5.png", "a wide magenta strip"),
        (uid(8), "datacomp_image", "image_too_small", "short_side=120", "7.png", "a small orange square")]
    assert verdicts(shown(capsys, run, "--stage", "datacomp_image", "--reason", "aspect_ratio_too_large")) == [
        (uid(6), "datacomp_image", "aspect_ratio_too_large", "aspect_ratio=4", "5.png", "a wide magenta strip")]
    # the scores a row had when it was dropped
    assert shown(capsys, run, "--stage", "datacomp_caption")[0]["scores"] == {"caption_chars": 2, "caption_words": 1}

    code, out, _ = show(capsys, run, "--stage", "download")
    assert code == 0 and out.splitlines() == [
        f"dropped  {uid(4)}  download: http_404 (HTTP 404 File not found)", "  url      3.png",
        "  caption  a blue square nowhere",
        "  scores   caption_chars=21 caption_words=4 download_status=http_404 download_error=HTTP 404 File not found",
        "1 of 1 rows dropped by download"]
    code, out, _ = show(capsys, run, "--reason", "image_too_small", "-n", "1")
    assert code == 0 and out.splitlines()[-1] == "1 of 2 rows dropped for image_too_small"


def test_a_uid_wherever_it_went(capsys, run: Path) -> None:
    """--uid finds a kept row, a dropped one, and both where the input repeated the uid."""
    assert verdicts(shown(capsys, run, "--uid", uid(7))) == [(uid(7), None, None, None, "6.png", "a cyan square here")]
    assert verdicts(shown(capsys, run, "--uid", uid(4))) == [
        (uid(4), "download", "http_404", "HTTP 404 File not found", "3.png", "a blue square nowhere")]
    assert [(r["stage"], r["reason"], r["url"]) for r in shown(capsys, run, "--uid", uid(1))] == [
        (None, None, "0.png"), ("read", "duplicate_uid", "8.png")]
    code, out, _ = show(capsys, run, "--uid", uid(1))
    files = len([*run.glob("shards/*.parquet"), *run.glob("rejects/*.parquet")])
    assert code == 0 and out.splitlines()[-1] == f"uid {uid(1)}: 2 rows (scanned all {files} shard and ledger files)"
    code, out, err = show(capsys, run, "--uid", uid(99))
    assert code == 2 and out == "" and err == f"curate: error: uid {uid(99)} is not in {run} (scanned {files} files)\n"


def test_unknown_stage_or_reason_is_one_line_naming_the_valid_ones(capsys, run: Path) -> None:
    code, out, err = show(capsys, run, "--stage", "dowload")
    assert (code, out) == (2, "") and err == ("curate: error: no stage 'dowload' in this run (stages: read, "
                                              "datacomp_caption, download, datacomp_image)\n")
    code, _, err = show(capsys, run, "--reason", "too_small")
    assert code == 2 and err == ("curate: error: no row was dropped for reason 'too_small' (reasons: "
                                 "aspect_ratio_too_large, caption_too_short, duplicate_uid, http_404, image_too_small)\n")
    code, _, err = show(capsys, run, "--stage", "download", "--reason", "image_too_small")
    assert code == 2 and err == ("curate: error: no row was dropped by download for reason 'image_too_small' "
                                 "(reasons by download: http_404)\n")
    code, _, err = show(capsys, run, "-n", "0")
    assert code == 2 and err == "curate: error: -n must be at least 1 (got 0)\n"
    code, out, _ = show(capsys, run, "--stage", "read", "--reason", "duplicate_uid")
    assert code == 0 and out.splitlines()[0] == (
        f"dropped  {uid(1)}  read: duplicate_uid (first at row 0 of {run.parent / 'pairs.parquet'})")


def test_show_reads_only_the_files_it_prints(capsys, run: Path, tmp_path: Path) -> None:
    """Stops after n rows, and never opens the ledger of a unit whose marker counts no such drop:
    with every other file made unreadable, the same rows print."""
    copy = unreadable_copy(run, tmp_path / "skip", [0, 2])  # http_404 is only in unit 1
    assert [r["uid"] for r in shown(capsys, copy, "--reason", "http_404")] == [uid(4)]
    copy = unreadable_copy(run, tmp_path / "first", [1, 2])
    assert [r["uid"] for r in shown(capsys, copy, "-n", "1")] == [uid(1)]
    assert [r["uid"] for r in shown(capsys, copy, "--reason", "image_too_small", "-n", "1")] == [uid(3)]
    with pytest.raises(pa.ArrowInvalid):  # the files are unreadable indeed: a second row would need one
        show(capsys, copy, "--reason", "image_too_small", "-n", "2")


def sheet_pixels(path: Path, count: int) -> list[tuple[int, int, int]]:
    with Image.open(path) as sheet:
        assert sheet.size == (min(count, 5) * TILE_W, -(-count // 5) * TILE_H)
        return [sheet.convert("RGB").getpixel(tile_centre(i, count)) for i in range(count)]


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))


def test_contact_sheet_of_kept_and_dropped_rows(capsys, run: Path, tmp_path: Path) -> None:
    """Kept rows' pictures come from their shard's tar; dropped rows' from the ledger's thumbnail
    (image_too_small rows had their bytes when dropped); a row without one is a grey tile."""
    kept = tmp_path / "kept.png"
    code, out, _ = show(capsys, run, "--open", kept)
    assert code == 0 and out.splitlines()[-1] == f"wrote {kept}"
    red, yellow, cyan = sheet_pixels(kept, 3)
    assert near(red, (255, 0, 0)) and near(yellow, (255, 255, 0)) and near(cyan, (0, 255, 255)), (red, yellow, cyan)

    dropped = tmp_path / "dropped.png"
    assert show(capsys, run, "--stage", "datacomp_image", "--open", dropped)[0] == 0
    green, magenta, orange = sheet_pixels(dropped, 3)
    assert near(green, (0, 255, 0)) and near(magenta, (255, 0, 255)) and near(orange, (255, 128, 0)), (green, magenta, orange)

    nothing = tmp_path / "404.png"
    assert show(capsys, run, "--uid", uid(4), "--open", nothing)[0] == 0
    assert sheet_pixels(nothing, 1) == [NO_IMAGE]
    with Image.open(io.BytesIO(nothing.read_bytes())) as image:
        assert image.format == "PNG"


def test_a_ledger_written_before_captions_scores_and_thumbnails(capsys, run: Path, tmp_path: Path) -> None:
    """Runs made before the ledger kept captions, scores and thumbnails still show (url, reason,
    detail), and their dropped rows are grey tiles."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for path in copy.glob("rejects/*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.select(["uid", "stage", "reason", "detail", "url", "unit", "row"]), path)
    code, out, _ = show(capsys, copy, "--reason", "image_too_small", "--open", tmp_path / "old.png")
    assert code == 0 and out.splitlines()[:2] == [f"dropped  {uid(3)}  datacomp_image: image_too_small (short_side=100)",
                                                  "  url      2.png"]
    assert verdicts(shown(capsys, copy, "--reason", "image_too_small")) == [
        (uid(3), "datacomp_image", "image_too_small", "short_side=100", "2.png", None),
        (uid(8), "datacomp_image", "image_too_small", "short_side=120", "7.png", None)]
    assert sheet_pixels(tmp_path / "old.png", 2) == [NO_IMAGE, NO_IMAGE]


def test_show_on_a_directory_that_is_not_a_run(capsys, tmp_path: Path) -> None:
    code, out, err = show(capsys, tmp_path)
    assert (code, out, err) == (2, "", f"curate: error: {tmp_path}: not a curate run directory (no manifest.json)\n")


def test_an_interrupted_run_shows_only_committed_units(capsys, run: Path, tmp_path: Path) -> None:
    """A unit without its marker (killed before its commit) is not the run's: its shards and
    ledger stay unread, as `curate stats` leaves them uncounted."""
    from curate.engine.rundir import RunDir

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "stats" / "units" / "00001.json").unlink()
    RunDir(copy).update_manifest(state="running")
    assert [r["uid"] for r in shown(capsys, copy)] == [uid(1), uid(7)]
    code, out, _ = show(capsys, copy, "--stage", "download")
    assert (code, out) == (0, "download dropped no rows\n")
    code, _, err = show(capsys, copy, "--uid", uid(5))
    assert code == 2 and err.startswith(f"curate: error: uid {uid(5)} is not in {copy} (scanned ")
