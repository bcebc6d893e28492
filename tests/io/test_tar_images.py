"""Images of WebDataset tar inputs go through the download image path (issue 5 §4): decoded
within the budget, re-encoded to the output settings, and a bad one is a ``read`` ledger row."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from http_fixtures import good_jpeg, png_header_bomb
from PIL import Image

from curate.config import InputSpec
from curate.engine.blocks import apply_stage
from curate.io.readers import READ_STAGE, plan_units, read_stages, read_unit
from curate.io.tar_images import TarImageCheck
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW
from curate.stages.base import ImageOutput, RunContext


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def sample(key: str, **members: bytes) -> tuple[str, dict[str, bytes]]:
    meta = json.dumps({"url": f"http://h/{key}.jpg"}).encode()
    return key, {"txt": f"a caption for {key}".encode(), "json": meta, **members}


def run_read(path: Path, output: ImageOutput) -> list[dict]:
    spec = InputSpec(path=str(path))
    units = plan_units(spec)
    table = read_unit(units[0], spec)
    for stage in read_stages(spec, units):
        stage.bind(RunContext(image_output=output))
        stage.setup()
        table = apply_stage(stage, table)
    return sorted(table.to_pylist(), key=lambda row: row[ROW])


def test_tar_images_are_decoded_checked_and_reencoded_like_downloads(tmp_path: Path) -> None:
    jpeg = good_jpeg("tar")
    path = write_tar(tmp_path / "in.tar", [
        sample("a", jpg=jpeg),
        sample("b", jpg=b"<!doctype html><html>not an image</html>"),
        sample("c", jpg=jpeg[: len(jpeg) // 2]),
        sample("d", png=png_header_bomb()),
        sample("e"),  # no image member: passes unchanged
        sample("f", jpg=jpeg + b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64),  # a motion photo's trailing MP4
    ])
    rows = run_read(path, ImageOutput(image_size=32, resize_mode="center_crop", image_format="png"))
    assert [(r[DROP_STAGE], r[DROP_REASON]) for r in rows] == [
        (None, None), (READ_STAGE, "not_an_image"), (READ_STAGE, "truncated_image"),
        (READ_STAGE, "decompression_bomb"), (None, None), (None, None)]
    assert all(rows[i][DROP_DETAIL] for i in (1, 2, 3))
    for kept in (rows[0], rows[5]):
        assert (kept["orig_width"], kept["orig_height"], kept["width"], kept["height"]) == (400, 300, 32, 32)
        with Image.open(io.BytesIO(kept["image"])) as image:
            assert (image.format, image.size) == ("PNG", (32, 32))
    assert rows[0]["orig_bytes"] == len(jpeg)
    assert rows[4]["image"] is None and rows[4]["orig_width"] is None
    assert all(rows[i]["image"] is None for i in (1, 2, 3))  # a dropped row's bytes are released


def test_only_tar_inputs_get_the_image_check(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "in.tar", [sample("a", jpg=good_jpeg("x"))])
    spec = InputSpec(path=str(path))
    [stage] = read_stages(spec, plan_units(spec))
    assert isinstance(stage, TarImageCheck) and stage.name == READ_STAGE
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": ["http://h/1"], "caption": ["a caption"]}), parquet)
    spec = InputSpec(path=str(parquet))
    assert read_stages(spec, plan_units(spec)) == []


def test_image_checks_may_follow_a_tar_input(tmp_path: Path) -> None:
    from curate.config import load_spec

    path = write_tar(tmp_path / "in.tar", [sample("a", jpg=good_jpeg("x"))])
    _, stages = load_spec({"input": {"path": str(path)}, "stages": [{"stage": "datacomp_image"}]})
    assert [s.kind for s in stages] == ["datacomp_image"]


def test_a_tar_input_run_writes_images_at_the_output_settings(tmp_path: Path, ray_session) -> None:
    """The implicit tar-image stage is bound like the user's stages: the spec's ``output`` decides."""
    from curate.pipeline import run_pipeline

    path = write_tar(tmp_path / "in.tar", [sample("a", jpg=good_jpeg("a")), sample("b", jpg=b"not an image")])
    spec = {"input": {"path": str(path)}, "output": {"image_size": 24, "resize_mode": "center_crop", "image_format": "png"}}
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    assert result.funnel.to_json()["stages"][0]["reasons"] == {"not_an_image": 1}
    with tarfile.open(tmp_path / "run" / "shards" / "00000.tar") as tar:
        [member] = [m for m in tar if m.name.endswith(".png")]
        with Image.open(tar.extractfile(member)) as image:
            assert (image.format, image.size) == ("PNG", (24, 24))
