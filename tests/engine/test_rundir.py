"""Run-directory rules: the same spec resumes, a different spec or input refuses without
--overwrite, --overwrite deletes only curate runs that do not hold their input, a commit never
marks a unit with files missing, a crash between renames and marker is rolled forward, and a
done unit that lost or changed a file is redone."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from curate.engine.rundir import RunDir
from curate.errors import UserError
from curate.pipeline import run_pipeline
from curate.schema import uids_to_datacomp


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
    with pytest.raises(UserError) as refused:
        run_pipeline(_spec(table_path), output=str(tmp_path / "busy"))
    assert str(refused.value) == (f"{tmp_path / 'busy'}: exists and is not a curate run directory (no manifest.json); "
                                  "choose another --output")
    # --overwrite deleted such a directory (issue 5 §3); it deletes only curate runs
    with pytest.raises(UserError, match=r"not a curate run directory \(no manifest.json\); choose another --output "
                                        r"\(--overwrite deletes only curate runs\)"):
        run_pipeline(_spec(table_path), output=str(tmp_path / "busy"), overwrite=True)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_overwrite_refuses_a_run_that_holds_its_input(tmp_path, table_path, ray_session) -> None:
    """--overwrite deleted the directory holding the run's own input (issue 5 §3)."""
    out = tmp_path / "run"
    run_pipeline(_spec(table_path), output=str(out))
    inside = out / "data" / "in.parquet"
    inside.parent.mkdir()
    inside.write_bytes(table_path.read_bytes())
    with pytest.raises(UserError) as refused:
        run_pipeline(_spec(inside), output=str(out), overwrite=True)
    assert str(refused.value) == (f"{out}: holds this run's input {inside}; --overwrite would delete it "
                                  "(move the input out or choose another --output)")
    assert inside.read_bytes() == table_path.read_bytes() and (out / "manifest.json").exists()


def _console() -> tuple[Console, io.StringIO]:
    log = io.StringIO()
    return Console(file=log, width=300), log


def _outputs(run) -> dict[str, bytes]:
    return {f"{folder}/{p.name}": p.read_bytes() for folder in ("shards", "rejects") for p in sorted((run / folder).iterdir())}


@pytest.mark.parametrize(("victim", "damage"), [("tar", "delete"), ("parquet", "delete"), ("rejects", "delete"),
                                               ("tar", "truncate")])
def test_a_unit_that_lost_or_changed_a_file_is_redone(tmp_path, table_path, ray_session, victim, damage) -> None:
    """A shard tar or ledger deleted by hand: the rerun said "complete" and its samples were gone;
    a shard parquet deleted: every rerun failed (issue 5 §3). Now the unit is redone, under the
    same shard names, and the run equals the undamaged one byte for byte."""
    out = tmp_path / "run"
    first = run_pipeline(_spec(table_path), output=str(out))
    before = _outputs(out)
    folder, suffix = ("rejects", ".parquet") if victim == "rejects" else ("shards", f".{victim}")
    victim = sorted(name for name in before if name.startswith(folder) and name.endswith(suffix))[-1]
    size = (out / victim).stat().st_size
    if damage == "delete":
        (out / victim).unlink()
        problem = f"{victim} is missing"
    else:
        os.truncate(out / victim, 10)
        problem = f"{victim} has 10 bytes, its marker says {size}"

    console, log = _console()
    again = run_pipeline(_spec(table_path), output=str(out), console=console)
    assert (again.units_run, again.funnel.kept) == (1, 3)
    assert _outputs(out) == before
    assert again.funnel.to_json() == first.funnel.to_json()
    assert np.array_equal(np.load(out / "uids.npy"), uids_to_datacomp(
        [uid for p in sorted((out / "shards").glob("*.parquet")) for uid in pq.read_table(p).column("uid").to_pylist()]))
    markers = [json.loads(p.read_text()) for p in sorted((out / "stats" / "units").glob("*.json"))]
    unit = next(m["unit"] for m in markers if victim in m["files"])
    assert f"resuming {out}: 2 of 3 units already complete\n" in log.getvalue()
    assert f"unit {unit}: {problem}; redoing the unit\n" in log.getvalue()


def _unit_files(run: RunDir, unit: int, names: list[str]) -> list[str]:
    (run.tmp / "shards").mkdir(parents=True, exist_ok=True)
    (run.tmp / "rejects").mkdir(parents=True, exist_ok=True)
    for name in names:
        (run.tmp / name).write_bytes(f"{name} of unit {unit}".encode())
    return names


def _empty_run(root) -> RunDir:
    run = RunDir(root)
    for folder in (run.shards, run.rejects, run.unit_stats):
        folder.mkdir(parents=True)
    return run


def test_a_commit_with_a_missing_file_fails_and_marks_nothing(tmp_path) -> None:
    """The journal skipped missing files yet still wrote the unit's marker (issue 5 §3)."""
    run = _empty_run(tmp_path / "run")
    files = _unit_files(run, 3, ["shards/00003-0000000.tar", "shards/00003-0000000.parquet"])
    stats = {"unit": 3, "rows": 2, "kept": 1, "drops": {"read": {"x": 1}}}
    with pytest.raises(RuntimeError) as failed:
        run.commit(3, [*files, "rejects/00003-0000000.parquet"], stats)
    assert str(failed.value) == "unit 3: its commit lists rejects/00003-0000000.parquet, which is not in _tmp/"
    assert run.done_units() == set() and not list(run.shards.iterdir())
    run.commit(3, files, stats)
    assert run.read_unit_stats(3) == {**stats, "files": {"shards/00000.tar": 34, "shards/00000.parquet": 38}}
    assert (run.shards / "00000.tar").read_bytes() == b"shards/00003-0000000.tar of unit 3"


def test_journal_is_rolled_forward(tmp_path) -> None:
    """A crash after the journal was written and one file moved: the next start completes the
    commit; the leftovers of a unit without a marker go."""
    run = _empty_run(tmp_path / "run")
    stats = {"unit": 3, "rows": 1, "kept": 1, "drops": {}}
    run.write_journal(3, _unit_files(run, 3, ["shards/00003-0000000.tar", "shards/00003-0000000.parquet"]), stats)
    os.replace(run.tmp / "shards" / "00003-0000000.tar", run.shards / "00000.tar")  # the crash came here
    (run.shards / "00001.tar").write_bytes(b"left by an unfinished unit")
    (run.rejects / "00004-0000000.parquet").write_bytes(b"left by an unfinished unit")
    (run.journal / "00004.json.partial").write_text('{"unit": 4, "mo')  # cut short while written
    (run.unit_stats / "00005.json.partial").write_text('{"unit": 5, "ro')
    assert RunDir(run.root).recover() == []
    assert (run.shards / "00000.tar").read_bytes() == b"shards/00003-0000000.tar of unit 3"
    assert run.read_unit_stats(3) == {**stats, "files": {"shards/00000.tar": 34, "shards/00000.parquet": 38}}
    assert sorted(p.name for p in run.shards.iterdir()) == ["00000.parquet", "00000.tar"]
    assert not list(run.rejects.iterdir()) and not list(run.journal.iterdir()) and not run.tmp.exists()
    assert run.done_units() == {3} and sorted(p.name for p in run.unit_stats.iterdir()) == ["00003.json"]


def test_a_journal_whose_file_is_gone_is_not_rolled_forward(tmp_path) -> None:
    run = _empty_run(tmp_path / "run")
    stats = {"unit": 5, "rows": 1, "kept": 1, "drops": {}}
    journal, _ = run.write_journal(5, _unit_files(run, 5, ["shards/00005-0000000.tar", "shards/00005-0000000.parquet"]), stats)
    os.replace(run.tmp / "shards" / "00005-0000000.parquet", run.shards / "00000.parquet")
    (run.tmp / "shards" / "00005-0000000.tar").unlink()  # neither in _tmp/ nor in place
    assert RunDir(run.root).recover() == [
        "unit 5: its commit lists shards/00005-0000000.tar, which is neither in _tmp/ nor in place; redoing the unit"]
    assert run.done_units() == set() and not list(run.shards.iterdir()) and not journal.exists()
