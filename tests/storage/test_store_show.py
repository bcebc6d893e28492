"""``curate show`` and ``curate stats --compare`` on a run directory on a real S3 server
(SeaweedFS): markers, shard parquets and tars, and ledgers are read through the store."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from curate.cli import main
from curate.stats.contact_sheet import NO_IMAGE, tile_centre
from tests.cli_runs import curate_run


def uid(i: int) -> str:
    return f"{i:032x}"


@pytest.mark.slow  # a `curate run` process of its own (~50 s on the loaded 2-core machine)
def test_show_and_compare_a_run_on_the_store(capsys, bucket: str, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    Image.new("RGB", (256, 256), (255, 0, 0)).save(served / "0.png")
    Image.new("RGB", (90, 90), (0, 0, 255)).save(served / "2.png")
    pq.write_table(pa.table({"uid": [uid(1), uid(2), uid(3), uid(4)], "url": ["0.png", "1.png", "2.png", "3.png"],
                             "caption": ["a red square here", "a missing picture here", "a small blue one", "no"]}),
                   tmp_path / "pairs.parquet")
    spec = {"name": "store_show", "input": {"path": str(tmp_path / "pairs.parquet"), "serve": str(served),
                                            "uid_column": "uid", "rows_per_unit": 2},
            "stages": [{"stage": "datacomp_caption"}, {"stage": "download", "timeout": 20, "threads": 2},
                       {"stage": "datacomp_image"}],
            "output": {"samples_per_shard": 2, "image_size": 64}}
    run = f"{bucket}/run"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    # its own process (and Ray): the session Ray's workers were started without this store's AWS_* environment
    process = curate_run(tmp_path / "spec.yaml", run)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output

    def show(*argv: str) -> list[dict]:
        assert main(["show", run, *argv, "--json"]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert [(r["uid"], r["caption"]) for r in show()] == [(uid(1), "a red square here")]
    assert [(r["uid"], r["stage"], r["reason"], r["detail"]) for r in show("--stage", "datacomp_image")] == [
        (uid(3), "datacomp_image", "image_too_small", "short_side=90")]
    assert [(r["uid"], r["reason"]) for r in show("--uid", uid(2))] == [(uid(2), "http_404")]
    sheet = tmp_path / "sheet.png"
    show("--uid", uid(1), "--open", str(sheet))
    with Image.open(sheet) as image:
        red = image.convert("RGB").getpixel(tile_centre(0, 1))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15, red
    show("--reason", "http_404", "--open", str(sheet))
    with Image.open(sheet) as image:
        assert image.convert("RGB").getpixel(tile_centre(0, 1)) == NO_IMAGE

    assert main(["stats", "--compare", run, run, "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert (comparison["a"]["kept"], comparison["recipe"]) == (1, [])
