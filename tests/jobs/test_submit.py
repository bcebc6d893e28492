"""``curate submit`` against a real Ray head with its job server on 127.0.0.1 (issue 9 §4): the job
runs a caption-only recipe from the uploaded working directory and writes the run directory with the
right funnel; its logs stream to stdout, its id comes first; a failed job, an unreachable address and
a recipe that could not work on a cluster are one line each."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from caption_project import EXPECTED, funnel_of, write_project
from ray_head import free_port, ray_head

from curate.cli import main
from curate.jobs.submit import job_request

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENGINE_TESTS = HERE.parent / "engine"
PROBE_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def head():
    with ray_head() as started:
        yield started


@pytest.mark.slow  # ~80 s: a head started (~30 s on 2 busy cores), then the job
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
    assert funnel_of(run_dir) == EXPECTED


@pytest.mark.slow  # shares the head above; ~20 s of its own
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


@pytest.mark.parametrize("case", ["outside", "relative_output", "default_output", "serve"])
def test_a_recipe_that_cannot_work_on_a_cluster_is_refused_before_upload(case: str, tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:
    recipe = write_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    address = f"http://127.0.0.1:{free_port()}"
    args = {"outside": [str(recipe), "--working-dir", str(tmp_path / "project" / "corpus"), "--output", "/data/run"],
            "relative_output": ["recipes/captions.yaml", "--output", "runs/x"],
            "default_output": ["recipes/captions.yaml"],
            "serve": ["recipes/captions.yaml", "--output", "/data/run", "--set", "input.serve=corpus"]}[case]
    rc = main(["submit", *args, "--address", address])
    assert rc == 2
    relative = ("the run directory {} would be relative to the job's copy of the working directory, which Ray "
                "deletes; pass --output s3://... (or an absolute path on a filesystem the cluster shares)")
    expected = {
        "outside": f"{recipe}: not inside the working directory {tmp_path / 'project' / 'corpus'}, which is what the "
                   "job receives (pass --working-dir a directory that holds it)",
        "relative_output": "recipes/captions.yaml: " + relative.format("runs/x"),
        "default_output": "recipes/captions.yaml: " + relative.format("runs/captions"),
        "serve": f"recipes/captions.yaml: input.serve: serves corpus on this machine's loopback, which the other "
                 f"nodes of the cluster at {address} cannot reach (serve the files from an address every node reaches "
                 "and list their URLs, or run without --address)",
    }[case]
    assert capsys.readouterr().err.splitlines() == [f"curate: error: {expected}"]


def test_a_recipe_whose_weights_are_only_on_the_cluster_is_submitted(tmp_path: Path, monkeypatch) -> None:
    """Before: the stages were built here, so laion_filter was refused for ViT-B-32:openai missing from
    this machine's model cache (the cluster's cache is what the run uses)."""
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(REPO)
    request = job_request("pipelines/laion_filter.yaml", "http://127.0.0.1:8265", None, "s3://runs/laion", ["input.serve=null"])
    assert request["entrypoint"] == ("python -m curate.cli run pipelines/laion_filter.yaml --output s3://runs/laion "
                                     "--set input.serve=null")
    assert request["runtime_env"] == {"working_dir": str(REPO), "py_modules": [str(REPO / "curate")],
                                      "excludes": [".git", "__pycache__"],
                                      "env_vars": {"RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}}


def _engine_probe():
    """The network-namespace probe and its strace parsing, from the embedded-Ray tests."""
    spec = importlib.util.spec_from_file_location("ray_network_probe", ENGINE_TESTS / "test_ray_runtime.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.opt_in  # ~120 s (a head, a job and curate under strace -f): `pytest -m opt_in tests/jobs`
def test_head_and_job_reach_loopback_only(tmp_path: Path) -> None:
    """The whole path (``ray start`` head with its job server, ``curate submit``, the job's ``curate run``)
    in a fresh network namespace under strace. Before ``silent_ray_env`` (only RAY_USAGE_STATS_ENABLED=0):
    connects to 8.8.8.8:53 and 169.254.169.254:80, DNS to the resolver (metadata.google.internal,
    usage-stats.ray.io), and GCS, raylet and agents listening on the namespace's 10.77.0.1 and ``::``."""
    probe = _engine_probe()
    problem = probe.netns_problem()
    if problem:
        pytest.skip(problem)
    recipe = write_project(tmp_path / "project")
    (tmp_path / "probe").mkdir()
    subprocess.run(["unshare", "-n", sys.executable, str(ENGINE_TESTS / "netns_probe.py"), str(tmp_path / "probe"),
                    "--", sys.executable, str(HERE / "ray_head.py"), str(tmp_path / "project"), str(recipe),
                    str(tmp_path / "run")], check=True, timeout=PROBE_TIMEOUT_S)
    result = json.loads((tmp_path / "probe" / "result.json").read_text())
    output = (tmp_path / "probe" / "stdout").read_text() + (tmp_path / "probe" / "stderr").read_text()
    assert result["rc"] == 0, output[-6000:]
    assert funnel_of(tmp_path / "run") == EXPECTED
    # curate submit's terminal: the job id, the job's logs, the status; before, Ray's SDK added its INFO lines
    assert "dashboard_sdk.py" not in (tmp_path / "probe" / "stderr").read_text()
    calls = probe.network_calls((tmp_path / "probe" / "strace.log").read_text(errors="replace"))
    assert calls, "strace saw no network calls at all: the probe is broken"
    assert sorted({c for c in calls if not probe.is_loopback(c[1])}) == []
    assert [c for c in calls if c[2] == 53] == []
    listening = [tuple(entry) for entry in result["listening"]]
    assert {entry[3] for entry in listening} >= {"gcs_server", "raylet"}, listening
    assert [entry for entry in listening if not probe.is_loopback(entry[0])] == []
