"""A full or read-only output is a one-line error (exit 2), and the rerun resumes (issue 5 §3).

The outputs live on a real small tmpfs (needs root, as in the test container); where mounting is
not permitted the tests skip and say so."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.errors import UserError
from curate.pipeline import run_pipeline

ROWS, ROWS_PER_UNIT = 4000, 500  # ~2 KB of tar a kept caption: ~1 MB a unit, 8 units


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: room for about two units' files, not eight."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _remount(mount, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def _spec(tmp_path) -> dict:
    path = tmp_path / "captions.parquet"
    if not path.exists():
        captions = [f"caption number {i} of a test corpus" for i in range(ROWS)]
        pq.write_table(pa.table({"url": [f"http://x/{i}.jpg" for i in range(ROWS)], "caption": captions}), path)
    return {"name": "disk", "input": {"path": str(path), "rows_per_unit": ROWS_PER_UNIT},
            "stages": [{"stage": "laion_caption"}], "output": {"samples_per_shard": 250}}


def test_disk_full_is_one_line_and_the_rerun_resumes(tmp_path, small_disk, ray_session, capsys) -> None:
    out = small_disk / "run"
    code = main(["run", str(_write_yaml(tmp_path)), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("curate: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"curate: error: {out}: no space left on device")
    assert errors[0].endswith("(free some space or choose another --output; rerunning the same command resumes)")
    done_before = len(list((out / "stats" / "units").glob("*.json")))
    assert done_before < ROWS // ROWS_PER_UNIT

    _remount(small_disk, "size=64m")  # the user frees space
    resumed = run_pipeline(_spec(tmp_path), output=str(out))
    assert resumed.resumed and resumed.units_run == ROWS // ROWS_PER_UNIT - done_before
    clean = run_pipeline(_spec(tmp_path), output=str(tmp_path / "clean"))
    assert resumed.funnel.to_json() == clean.funnel.to_json() and resumed.funnel.kept == ROWS
    assert np.array_equal(np.load(out / "uids.npy"), np.load(tmp_path / "clean" / "uids.npy"))
    sizes = json.loads((out / "shards" / "sizes.json").read_text())
    assert sizes == {f"{i:05d}.tar": 250 for i in range(ROWS // 250)}


def test_read_only_output_is_one_line_and_the_rerun_resumes(tmp_path, small_disk, ray_session) -> None:
    _remount(small_disk, "ro")
    with pytest.raises(UserError) as refused:
        run_pipeline(_spec(tmp_path), output=str(small_disk / "run"))
    assert str(refused.value) == (f"{small_disk / 'run'}: read-only file system writing {small_disk / 'run'} "
                                  "(make it writable or choose another --output; rerunning the same command resumes)")

    _remount(small_disk, "rw,size=64m")
    first = run_pipeline(_spec(tmp_path), output=str(small_disk / "run"))
    marker = small_disk / "run" / "stats" / "units" / "00003.json"
    marker.unlink()  # as if the run had stopped before unit 3's commit
    _remount(small_disk, "ro")
    with pytest.raises(UserError, match=r": read-only file system writing .*curate\.lock \(make it writable"):
        run_pipeline(_spec(tmp_path), output=str(small_disk / "run"))
    _remount(small_disk, "rw")
    again = run_pipeline(_spec(tmp_path), output=str(small_disk / "run"))
    assert (again.resumed, again.units_run) == (True, 1) and again.funnel.to_json() == first.funnel.to_json()


def _write_yaml(tmp_path):
    import yaml

    path = tmp_path / "disk.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path)))
    return path
