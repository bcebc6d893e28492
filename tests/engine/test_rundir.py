"""Run-directory rules: the same spec resumes, a different spec or input refuses without
--overwrite, and a crash between renames and marker is rolled forward."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.engine.rundir import RunDir
from curate.errors import UserError
from curate.pipeline import run_pipeline


def _spec(path, min_chars: int = 5) -> dict:
    return {"name": "rd", "input": {"path": str(path), "rows_per_unit": 2},
            "stages": [{"stage": "laion_caption", "min_chars": min_chars}], "output": {"samples_per_shard": 2}}


@pytest.fixture
def table_path(tmp_path):
    path = tmp_path / "in.parquet"
    captions = ["a cat", "no", "a dog", "ok", "birds"]
    pq.write_table(pa.table({"url": [f"http://x/{i}" for i in range(5)], "caption": captions}), path)
    return path


def test_same_spec_resumes_different_spec_refuses(tmp_path, table_path, ray_session) -> None:
    out = str(tmp_path / "run")
    first = run_pipeline(_spec(table_path), output=out)
    assert (first.units_run, first.funnel.kept, first.resumed) == (3, 3, False)

    again = run_pipeline(_spec(table_path), output=out)
    assert (again.units_run, again.funnel.kept, again.resumed) == (0, 3, True)

    with pytest.raises(UserError, match="holds a run of a different spec; pass --overwrite"):
        run_pipeline(_spec(table_path, min_chars=1), output=out)
    fresh = run_pipeline(_spec(table_path, min_chars=1), output=out, overwrite=True)
    assert (fresh.units_run, fresh.funnel.kept) == (3, 5)

    pq.write_table(pa.table({"url": ["http://y"], "caption": ["changed input"]}), table_path)
    with pytest.raises(UserError, match="different input files"):
        run_pipeline(_spec(table_path, min_chars=1), output=out)


def test_refuses_a_directory_that_is_not_a_run(tmp_path, table_path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not a curate run directory"):
        run_pipeline(_spec(table_path), output=str(tmp_path / "busy"))


def test_journal_is_rolled_forward(tmp_path) -> None:
    """A crash after the journal was written: the next start completes the commit."""
    run = RunDir(tmp_path / "run")
    for folder in (run.shards, run.rejects, run.unit_stats, run.tmp / "shards", run.journal):
        folder.mkdir(parents=True)
    (run.tmp / "shards" / "00003-0000000.tar").write_bytes(b"tar")
    (run.shards / "00004-0000000.tar").write_bytes(b"left by an unfinished unit")
    stats = {"unit": 3, "rows": 1, "kept": 1, "drops": {}}
    (run.journal / "00003.json").write_text(json.dumps({"unit": 3, "files": ["shards/00003-0000000.tar"], "stats": stats}))
    run.recover()
    assert (run.shards / "00003-0000000.tar").read_bytes() == b"tar"
    assert run.read_unit_stats(3) == stats and run.done_units() == {3}
    assert not (run.shards / "00004-0000000.tar").exists()  # unit 4 has no marker: redone from scratch
    assert not list(run.journal.iterdir()) and not run.tmp.exists()
