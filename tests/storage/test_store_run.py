"""A whole ``curate run`` on a real S3 server (issue 6 §3): the input is read from a bucket, the
run directory is written to a bucket, the driver is SIGKILLed mid-run and the rerun resumes
there; the result equals a clean run into a local directory, and webdataset reads the shards
back over the same endpoint through the ``--train-data`` string curate prints."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate import storage
from tests.cli_runs import CURATE, curate_run

pytestmark = pytest.mark.slow



def _spec(input_path: str, corpus: Path) -> dict:
    return {
        "name": "store",
        "input": {"path": input_path, "serve": str(corpus), "rows_per_unit": 10},
        "stages": [
            {"stage": "datacomp_caption"},
            {"stage": "url_dedup"},
            {"stage": "download", "timeout": 20, "threads": 1},  # slow units: a wide window to kill in
            {"stage": "datacomp_image"},
        ],
        "output": {"samples_per_shard": 7, "image_size": 64, "resize_mode": "center_crop"},
        "resources": {"cpus": 2},
    }



def _committed(run: str, folder: str) -> list[str]:
    markers = [json.loads(storage.read_bytes(uri)) for uri in storage.list_files(f"{run}/stats/units")]
    return sorted(f"{run}/{name}" for marker in markers for name in marker["files"] if name.startswith(folder))


def _samples(tars: list[str]) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for uri in tars:
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri))) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                sample = samples.setdefault(key, {})
                assert ext not in sample, f"uid {key} written twice"
                sample[ext] = tar.extractfile(member).read()
    return samples


def _ledger_uids(parquets: list[str]) -> list[str]:
    tables = [pq.read_table(storage.filesystem_of(u)[1], filesystem=storage.filesystem_of(u)[0]) for u in parquets]
    return sorted(pa.concat_tables(tables).column("uid").to_pylist()) if tables else []


def test_run_on_a_store_killed_and_resumed_equals_a_clean_local_run_dir(tmp_path, synth_corpus, bucket) -> None:
    storage.write_bytes(f"{bucket}/in/samples.parquet", (synth_corpus / "samples.parquet").read_bytes())
    spec = tmp_path / "store.yaml"  # both runs read the bucket: hashed uids include the input's URI
    spec.write_text(yaml.safe_dump(_spec(f"{bucket}/in/samples.parquet", synth_corpus)))
    run, clean = f"{bucket}/run", tmp_path / "clean"

    proc = curate_run(spec, run, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not storage.list_files(f"{run}/stats/units"):
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted:\n" + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = len(storage.list_files(f"{run}/stats/units"))
    assert 1 <= interrupted_at < 30
    stats = subprocess.run([*CURATE, "stats", run, "--json"], capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    partial = json.loads(stats.stdout)
    assert (partial["state"], partial["units"], partial["units_total"]) == ("interrupted", interrupted_at, 30)

    resumed = curate_run(spec, run)
    output, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, output
    assert f"resuming {run}: " in output
    fresh = curate_run(spec, str(clean))
    clean_output, _ = fresh.communicate(timeout=400)
    assert fresh.returncode == 0, clean_output

    # Only committed files remain: the killed attempt's unmarked parts were removed on resume.
    left = [u for u in storage.list_files(f"{run}/shards") if not u.endswith("/sizes.json")]
    assert left == _committed(run, "shards/")
    assert storage.list_files(f"{run}/rejects") == _committed(run, "rejects/")

    tars = _committed(run, "shards/")[1::2]
    assert all(t.endswith(".tar") for t in tars)
    store_samples = _samples(tars)
    clean_samples = _samples(sorted(str(p) for p in (clean / "shards").glob("*.tar")))
    assert store_samples == clean_samples
    with storage.open_input(f"{run}/uids.npy") as handle:
        assert np.array_equal(np.load(handle), np.load(clean / "uids.npy"))
    clean_ledgers = sorted(str(p) for p in (clean / "rejects").glob("*.parquet"))
    assert _ledger_uids(_committed(run, "rejects/")) == _ledger_uids(clean_ledgers)
    funnel = json.loads(storage.read_bytes(f"{run}/stats/stats.json"))
    assert funnel == json.loads((clean / "stats" / "stats.json").read_text()) and funnel["rows"] == 300
    sizes = json.loads(storage.read_bytes(f"{run}/shards/sizes.json"))
    assert sizes == {t.rsplit("/", 1)[1]: len({k for k in _samples([t])}) for t in tars}

    # webdataset reads the shards back over the same endpoint, from the printed --train-data.
    train_data = re.search(r"--train-data '([^']+)'", output.replace("\n", "")).group(1)
    assert train_data == "::".join(f"pipe:aws s3 cp {t} -" for t in tars)
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI is not installed: webdataset's pipe:aws shards were not read back")
    import webdataset as wds

    read_back = {s["__key__"]: s for s in wds.WebDataset(train_data.split("::"), shardshuffle=False)}
    assert read_back.keys() == clean_samples.keys()
    for key, members in clean_samples.items():
        assert {ext: read_back[key][ext] for ext in members} == members
