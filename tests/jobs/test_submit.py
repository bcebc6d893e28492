"""``curate submit`` against a real Ray head with its job server on 127.0.0.1 (issue 9 §4): the job
runs a caption-only recipe from the uploaded working directory and writes the run directory with the
right funnel; its logs stream to stdout, its id comes first; a failed job, an unreachable address and
a recipe that could not work on a cluster are one line each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from ray_head import free_port, ray_head

from curate.cli import main

ROWS = 40


@pytest.fixture(scope="module")
def head():
    with ray_head() as started:
        yield started


def caption(i: int) -> str:
    """Every 4th too short for LAION (< 5 characters), the next two words only (DataComp wants > 2), the rest kept."""
    return ["ab", "a photo", f"a photo of a cat number {i}", f"a drawing of a dog number {i}"][i % 4]


def write_project(root: Path, input_path: str = "corpus/pairs.parquet") -> Path:
    """A working directory: a corpus and a recipe naming it relative to the directory, as in this repository."""
    (root / "corpus").mkdir(parents=True)
    pq.write_table(pa.table({"url": [f"http://example.com/{i}.jpg" for i in range(ROWS)],
                             "caption": [caption(i) for i in range(ROWS)]}), root / "corpus" / "pairs.parquet")
    (root / "recipes").mkdir()
    spec = {"name": "captions", "input": {"path": input_path, "rows_per_unit": 10},
            "stages": [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}],
            "output": {"samples_per_shard": 16, "image_size": 32}}
    (root / "recipes" / "captions.yaml").write_text(yaml.safe_dump(spec))
    return root / "recipes" / "captions.yaml"


def test_submit_runs_the_recipe_on_the_cluster(head, tmp_path: Path, capsys) -> None:
    recipe = write_project(tmp_path / "project")
    run_dir = tmp_path / "run"
    rc = main(["submit", str(recipe), "--address", head.address, "--working-dir",
               str(tmp_path / "project"), "--output", str(run_dir)])
    out, err = capsys.readouterr()
    assert rc == 0, out[-3000:] + err[-3000:]
    job_id = out.splitlines()[0]
    assert re.fullmatch(r"raysubmit_\w+", job_id)
    assert f"Running entrypoint for job {job_id}: python -m curate.cli run recipes/captions.yaml --output {run_dir}" in out
    # curate run's own last lines (rich wraps them at 80 columns off a terminal), streamed from the job
    assert "run directory:" in out
    assert "--train-num-samples 20 --dataset-type webdataset" in out
    assert f"job {job_id}: SUCCEEDED" in err
    stats = json.loads((run_dir / "stats" / "stats.json").read_text())
    assert (stats["rows"], stats["kept"], stats["units"], stats["state"]) == (ROWS, ROWS // 2, ROWS // 10, "complete")
    assert stats["stages"] == [
        {"stage": "read", "in": ROWS, "kept": ROWS, "dropped": 0, "reasons": {}},
        {"stage": "laion_caption", "in": ROWS, "kept": 30, "dropped": 10, "reasons": {"caption_too_short": 10}},
        {"stage": "datacomp_caption", "in": 30, "kept": 20, "dropped": 10, "reasons": {"caption_too_few_words": 10}},
    ]


def test_a_failed_job_is_one_line_and_exit_1(head, tmp_path: Path, capsys, monkeypatch) -> None:
    """The input is missing on the cluster: curate run's one-line error is the job's last log line.
    The working directory defaults to the current one; --no-wait prints the id alone."""
    write_project(tmp_path / "project", input_path="corpus/missing.parquet")
    monkeypatch.chdir(tmp_path / "project")
    rc = main(["submit", "recipes/captions.yaml", "--address", head.address, "--output", str(tmp_path / "run"),
               "--no-wait"])
    assert rc == 0
    job_id = capsys.readouterr().out.strip()
    assert re.fullmatch(r"raysubmit_\w+", job_id)
    rc = main(["submit", "recipes/captions.yaml", "--address", head.address, "--output", str(tmp_path / "run2")])
    out, err = capsys.readouterr()
    assert rc == 1
    second = out.splitlines()[0]
    assert second != job_id
    assert re.fullmatch(rf"curate: error: job {second} FAILED: curate: error: input\.path: 'corpus/missing\.parquet' "
                        r"does not exist \(check the path, relative to /tmp/crj\w+/session_[\w-]+/runtime_resources/"
                        r"working_dir_files/_ray_pkg_\w+\)", err.splitlines()[-1])


@pytest.mark.parametrize("kind", ["dead_port", "no_scheme"])
def test_a_bad_address_is_one_line(kind: str, tmp_path: Path, capsys) -> None:
    """Before the scheme check, ``127.0.0.1:PORT`` was taken for a GCS address: Ray dialled the machine's
    external address for 45 s."""
    recipe = write_project(tmp_path / "project")
    port = free_port()
    address = {"dead_port": f"http://127.0.0.1:{port}", "no_scheme": f"127.0.0.1:{port}"}[kind]
    rc = main(["submit", str(recipe), "--address", address, "--working-dir", str(tmp_path / "project"),
               "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.splitlines() == [{
        "dead_port": f"curate: error: --address {address}: no Ray job server answers there",
        "no_scheme": f"curate: error: --address {address}: not a job server address (http://HEAD:8265, the head's "
                     "dashboard port)",
    }[kind]]


@pytest.mark.parametrize("case", ["outside", "relative_output", "default_output"])
def test_a_recipe_that_cannot_work_on_a_cluster_is_refused_before_upload(case: str, tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:
    recipe = write_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    args = {"outside": [str(recipe), "--working-dir", str(tmp_path / "project" / "corpus"), "--output", "/data/run"],
            "relative_output": ["recipes/captions.yaml", "--output", "runs/x"],
            "default_output": ["recipes/captions.yaml"]}[case]
    rc = main(["submit", *args, "--address", f"http://127.0.0.1:{free_port()}"])
    assert rc == 2
    expected = {
        "outside": f"{recipe}: not inside the working directory {tmp_path / 'project' / 'corpus'}, which is what the "
                   "job receives (pass --working-dir a directory that holds it)",
        "relative_output": "recipes/captions.yaml: the run directory runs/x would be relative to the job's copy of the "
                           "working directory, which Ray deletes; pass --output s3://... (or an absolute path on a "
                           "filesystem the cluster shares)",
        "default_output": "recipes/captions.yaml: the run directory runs/captions would be relative to the job's copy "
                          "of the working directory, which Ray deletes; pass --output s3://... (or an absolute path on "
                          "a filesystem the cluster shares)",
    }[case]
    assert capsys.readouterr().err.splitlines() == [f"curate: error: {expected}"]
