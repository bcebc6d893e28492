"""The commit protocol where there is no atomic rename (issue 6 §3): on a store, parts are written
whole under final names that carry the attempt, the unit marker written last is the commit,
only marked files count, and a dead attempt's leftovers are removed on resume."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from curate import storage
from curate.config import load_spec
from curate.engine.rundir import RunDir
from curate.errors import UserError
from curate.io.writers import write_unit_part
from curate.schema import CAPTION, DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UID, UNIT, URL, uids_to_datacomp


def _uid(unit: int, row: int) -> str:
    return f"{unit * 7919 + row * 104729:032x}"


def _part(unit: int, rows: range, dropped: set[int] = frozenset()) -> pa.Table:
    rows = list(rows)
    return pa.table({
        UID: [_uid(unit, r) for r in rows], URL: [f"http://x/{unit}/{r}" for r in rows],
        CAPTION: [f"caption {r}" for r in rows], UNIT: pa.array([unit] * len(rows), pa.int32()),
        ROW: pa.array(rows, pa.int32()),
        DROP_STAGE: pa.array(["laion_caption" if r in dropped else None for r in rows], pa.string()),
        DROP_REASON: pa.array(["too_short" if r in dropped else None for r in rows], pa.string()),
        DROP_DETAIL: pa.array(["3 chars" if r in dropped else None for r in rows], pa.string()),
    })


def _write_and_commit(run: RunDir, unit: int, rows: range, dropped: set[int] = frozenset()) -> list[str]:
    record = write_unit_part(_part(unit, rows, dropped), run.tmp, 2, "jpg", run.part_tag())
    run.commit(unit, record.files, {"unit": unit, "rows": len(rows), "kept": record.kept, "drops": record.drops})
    return record.files


@pytest.fixture
def store_run(bucket) -> RunDir:
    spec, _ = load_spec({"name": "st", "input": {"path": f"{bucket}/in.parquet", "rows_per_unit": 4},
                         "stages": [{"stage": "laion_caption"}]})
    run = RunDir(f"{bucket}/run")
    run.check_output([], overwrite=False)
    assert run.prepare(spec, [["x", 1, "etag"]], 3, overwrite=False) is False
    return run


def test_parts_go_in_place_and_the_marker_is_the_commit(store_run) -> None:
    run = store_run
    files = _write_and_commit(run, 0, range(4), dropped={1})
    tag = f"00000-{run.attempt}"
    assert files == [f"shards/{tag}-0000000.tar", f"shards/{tag}-0000000.parquet",
                     f"shards/{tag}-0000003.tar", f"shards/{tag}-0000003.parquet", f"rejects/{tag}-0000000.parquet"]
    marker = json.loads(storage.read_bytes(f"{run.root}/stats/units/00000.json"))
    assert marker["files"] == {name: storage.file_size(f"{run.root}/{name}") for name in files}
    assert (run.done_units(), run.committed_files()) == ({0}, sorted(files))
    assert not storage.exists(f"{run.root}/_tmp") and not storage.exists(f"{run.root}/_journal")


def test_a_part_without_a_marker_is_ignored_and_removed_on_resume(store_run) -> None:
    run = store_run
    committed = _write_and_commit(run, 0, range(4))
    dead = RunDir(run.root)  # a killed driver's attempt: its parts were written, its marker never was
    orphans = write_unit_part(_part(1, range(4)), dead.tmp, 2, "jpg", dead.part_tag()).files
    assert all(storage.exists(f"{run.root}/{name}") for name in orphans)
    assert run.done_units() == {0} and run.committed_files() == sorted(committed)
    assert run.write_uids_and_sizes() == {name.removeprefix("shards/"): 2 for name in committed if name.endswith(".tar")}

    resumed = RunDir(run.root)
    assert resumed.recover() == []
    assert not any(storage.exists(f"{run.root}/{name}") for name in orphans)
    left = [uri.removeprefix(f"{run.root}/") for uri in storage.list_files(f"{run.root}/shards")]
    assert left == sorted(n for n in committed if n.startswith("shards/"))  # sizes.json too: finishing rewrites it


def test_a_done_unit_that_lost_a_file_is_redone(store_run) -> None:
    run = store_run
    files = _write_and_commit(run, 2, range(4))
    storage.delete(f"{run.root}/{files[2]}")
    assert RunDir(run.root).recover() == [f"unit 2: {files[2]} is missing; redoing the unit"]
    assert run.done_units() == set()
    assert storage.list_files(f"{run.root}/shards") == []  # the unit's other files went with its marker


def test_uids_and_train_data_on_a_store(store_run) -> None:
    run = store_run
    _write_and_commit(run, 1, range(4))
    _write_and_commit(run, 0, range(3), dropped={0})
    sizes = run.write_uids_and_sizes()
    expected = uids_to_datacomp([_uid(1, r) for r in range(4)] + [_uid(0, r) for r in (1, 2)])
    with storage.open_input(f"{run.root}/uids.npy") as handle:
        assert np.array_equal(np.load(handle), expected)
    assert json.loads(storage.read_bytes(f"{run.root}/shards/sizes.json")) == sizes
    assert run.train_data(sizes) == "::".join(f"pipe:aws s3 cp {run.root}/shards/{name} -" for name in sorted(sizes))


def test_a_commit_listing_a_missing_part_fails(store_run) -> None:
    with pytest.raises(RuntimeError, match=r"unit 0: its commit lists shards/gone.tar, which is not in s3://"):
        store_run.commit(0, ["shards/gone.tar"], {"unit": 0, "rows": 1, "kept": 1, "drops": {}})
    assert store_run.done_units() == set()


def test_a_run_of_another_uid_version_is_not_resumed(store_run) -> None:
    run = store_run
    assert run.manifest()["uid_version"] == 1
    run.update_manifest(uid_version=2)
    spec, _ = load_spec({"name": "st", "input": {"path": "s3://x/in.parquet", "rows_per_unit": 4},
                         "stages": [{"stage": "laion_caption"}]})
    with pytest.raises(UserError) as refused:
        run.prepare(spec, [["x", 1, "etag"]], 3, overwrite=False)
    assert str(refused.value) == (f"{run.root}: made with uid_version 2, this curate computes uid_version 1; "
                                  "pass --overwrite to start over, or choose another --output")


def test_a_retry_rounds_ledger_replaces_the_committed_one_by_name(store_run) -> None:
    run = store_run
    files = _write_and_commit(run, 0, range(4), dropped={1, 2})
    ledger = files[-1]
    retry = RunDir(run.root)
    rewritten = f"rejects/00000-{retry.part_tag('r1')}-ledger.parquet"
    storage.write_bytes(f"{run.root}/{rewritten}", b"the ledger without the retried rows")
    retry.commit(0, [rewritten], {"unit": 0, "rows": 4, "kept": 3, "drops": {"laion_caption": {"too_short": 1}}},
                 replaces=(ledger,))
    listed = json.loads(storage.read_bytes(f"{run.root}/stats/units/00000.json"))["files"]
    assert sorted(listed) == sorted([*files[:-1], rewritten]) and not storage.exists(f"{run.root}/{ledger}")
    assert RunDir(run.root).recover() == []


def test_overwrite_clears_a_store_run_but_its_lock(store_run) -> None:
    run = store_run
    _write_and_commit(run, 0, range(4), dropped={1})
    storage.write_bytes(f"{run.root}/curate.lock", b"{}")
    spec, _ = load_spec({"name": "st", "input": {"path": "s3://x/in.parquet", "rows_per_unit": 4},
                         "stages": [{"stage": "laion_caption", "min_chars": 1}]})
    run.check_output([], overwrite=True)
    assert run.prepare(spec, [["x", 1, "etag"]], 3, overwrite=True) is False
    names = [uri.removeprefix(f"{run.root}/") for uri in storage.list_files(run.root)]
    assert names == ["curate.lock", "manifest.json", "pipeline.yaml"]


def test_a_prefix_that_is_not_a_run_or_holds_the_input_is_refused(bucket) -> None:
    storage.write_bytes(f"{bucket}/busy/notes.txt", b"mine")
    with pytest.raises(UserError) as refused:
        RunDir(f"{bucket}/busy").check_output([], overwrite=True)
    assert str(refused.value) == (f"{bucket}/busy: exists and is not a curate run directory (no manifest.json); "
                                  "choose another --output (--overwrite deletes only curate runs)")
    storage.write_bytes(f"{bucket}/run/manifest.json", b"{}")
    with pytest.raises(UserError, match=rf"^{bucket}/run: holds this run's input {bucket}/run/in.parquet; --overwrite"):
        RunDir(f"{bucket}/run").check_output([f"{bucket}/run/in.parquet"], overwrite=True)
    RunDir(f"{bucket}/run").check_output([f"{bucket}/run-inputs/in.parquet"], overwrite=True)
