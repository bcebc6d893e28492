"""A real two-node Ray cluster on this machine (issue 6 §4): ``curate run --address`` spreads the
units over both nodes, and its run directory equals a single-node run's (same uids.npy, funnel
and ledger) for caption stages, a download from a loopback server and a global stage."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from curate.errors import ConfigError
from curate.pipeline import run_pipeline

HERE = Path(__file__).resolve().parent
CURATE = Path(sys.executable).parent / "curate"
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # what Ray's cluster start leaves behind
RUN_TIMEOUT_S = 300
EVENT_QUERIES = 10  # each waits ray_cluster.EVENTS_SETTLE_S for task events to reach the GCS


@dataclass
class TwoNodes:
    address: str
    nodes: list[str]
    process: subprocess.Popen
    seen_jobs: set

    def tasks_per_node_of_new_jobs(self) -> dict[str, int]:
        """Tasks per node of the jobs (curate runs) since the last call. Task events reach the
        GCS within seconds; they only accumulate, so asking again until both nodes show is safe."""
        for _ in range(EVENT_QUERIES):
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            jobs = json.loads(self.process.stdout.readline())
            per_node: dict[str, int] = {}
            for job in set(jobs) - self.seen_jobs:
                for node, tasks in jobs[job].items():
                    per_node[node] = per_node.get(node, 0) + tasks
            if set(per_node) >= set(self.nodes):
                break
        self.seen_jobs |= set(jobs)
        return per_node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cluster_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    # No token between the test's processes; every Ray process on loopback.
    return env | {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def two_nodes() -> TwoNodes:
    # Ray's socket paths must stay under 108 bytes: a short temp dir, not pytest's.
    temp = tempfile.mkdtemp(prefix="cray", dir="/tmp")
    log = open(Path(temp) / "launcher.log", "w")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, str(HERE / "ray_cluster.py"), str(_free_port()), temp],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=_cluster_env())
    started = None
    try:
        first = process.stdout.readline()
        if not first:
            log.flush()
            pytest.fail(f"the two-node cluster did not start: {(Path(temp) / 'launcher.log').read_text()[-2000:]}")
        started = json.loads(first)
        yield TwoNodes(started["address"], started["nodes"], process, set())
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        with contextlib.suppress(FileNotFoundError):
            if process.returncode is not None and started and CURRENT_CLUSTER.read_text().strip() == started["address"]:
                CURRENT_CLUSTER.unlink()
        shutil.rmtree(temp, ignore_errors=True)


def _run_on_cluster(spec: dict, tmp_path: Path, cluster: TwoNodes) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "on-cluster"
    done = subprocess.run([str(CURATE), "run", str(path), "--address", cluster.address, "--output", str(out)],
                          capture_output=True, text=True, env=_cluster_env(), timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _ledger(run: Path) -> list[tuple]:
    tables = [pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]
    if not tables:
        return []
    ledger = pa.concat_tables(tables)
    return sorted(zip(*(ledger.column(c).to_pylist() for c in ("uid", "stage", "reason", "detail", "unit", "row")),
                      strict=True))


def _assert_same_run(on_cluster: Path, single: Path) -> None:
    assert np.array_equal(np.load(on_cluster / "uids.npy"), np.load(single / "uids.npy"))
    assert json.loads((on_cluster / "stats" / "stats.json").read_text()) == json.loads(
        (single / "stats" / "stats.json").read_text())
    assert _ledger(on_cluster) == _ledger(single)


def _assert_both_nodes_ran(cluster: TwoNodes) -> None:
    per_node = cluster.tasks_per_node_of_new_jobs()
    assert set(per_node) == set(cluster.nodes), f"tasks per node: {per_node}, nodes {cluster.nodes}"


def _csv(path: Path, urls: list[str], captions: list[str]) -> Path:
    pacsv.write_csv(pa.table({"url": urls, "caption": captions}), path)
    return path


def _spec(name: str, data: Path, stages: list[dict], rows_per_unit: int) -> dict:
    return {"name": name, "input": {"path": str(data), "rows_per_unit": rows_per_unit}, "stages": stages,
            "output": {"samples_per_shard": 7, "image_size": 32}}


def test_caption_stages_on_two_nodes(tmp_path: Path, two_nodes: TwoNodes, ray_session) -> None:
    captions = [("a photo of " + "word " * (i % 6)).strip() if i % 4 else "ab" for i in range(400)]
    data = _csv(tmp_path / "pairs.csv", [f"http://example.com/{i}.jpg" for i in range(400)], captions)
    spec = _spec("two-nodes-captions", data, [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}], 25)
    on_cluster = _run_on_cluster(spec, tmp_path, two_nodes)
    _assert_both_nodes_ran(two_nodes)
    single = run_pipeline(spec, output=str(tmp_path / "single")).run_dir
    _assert_same_run(on_cluster, single)


def test_download_from_a_loopback_server_on_two_nodes(tmp_path: Path, two_nodes: TwoNodes, http_server,
                                                      ray_session) -> None:
    """Both nodes are this machine, so both reach the test's loopback server."""
    urls = [http_server.url(f"/good/{i}.jpg") if i % 5 else http_server.url("/404") for i in range(40)]
    data = _csv(tmp_path / "pairs.csv", urls, [f"a caption number {i}" for i in range(40)])
    stages = [{"stage": "download", "timeout": 20, "threads": 4, "allow_private": ["127.0.0.0/8"]}]
    spec = _spec("two-nodes-download", data, stages, 5)
    on_cluster = _run_on_cluster(spec, tmp_path, two_nodes)
    _assert_both_nodes_ran(two_nodes)
    single = run_pipeline(spec, output=str(tmp_path / "single")).run_dir
    _assert_same_run(on_cluster, single)
    assert json.loads((on_cluster / "stats" / "stats.json").read_text())["kept"] == 32


def test_global_stage_on_two_nodes(tmp_path: Path, two_nodes: TwoNodes, ray_session) -> None:
    """url_dedup's survivors are the first occurrences across units, whichever node saw them."""
    urls = [f"http://example.com/{i % 70}.jpg" for i in range(300)]
    data = _csv(tmp_path / "pairs.csv", urls, [f"caption {i}" for i in range(300)])
    spec = _spec("two-nodes-dedup", data, [{"stage": "url_dedup"}], 20)
    on_cluster = _run_on_cluster(spec, tmp_path, two_nodes)
    _assert_both_nodes_ran(two_nodes)
    single = run_pipeline(spec, output=str(tmp_path / "single")).run_dir
    _assert_same_run(on_cluster, single)
    assert json.loads((on_cluster / "stats" / "stats.json").read_text())["kept"] == 70


def test_input_serve_is_refused_on_a_cluster(tmp_path: Path, two_nodes: TwoNodes) -> None:
    """Before: the other node's download workers fetched their own loopback and failed every row."""
    (tmp_path / "images").mkdir()
    data = _csv(tmp_path / "pairs.csv", ["a.jpg"], ["a caption"])
    spec = _spec("serve", data, [{"stage": "download"}], 10) | {"input": {"path": str(data), "serve": str(tmp_path / "images")}}
    with pytest.raises(ConfigError) as info:
        run_pipeline(spec, output=str(tmp_path / "out"), address=two_nodes.address)
    assert str(info.value) == (
        f"<dict>: input.serve: serves {tmp_path / 'images'} on this machine's loopback, which the other nodes of the "
        f"cluster at {two_nodes.address} cannot reach (serve the files from an address every node reaches and list "
        "their URLs, or run without --address)")
    assert not (tmp_path / "out").exists()
