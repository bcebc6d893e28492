"""``jobs/slurm/curate.sbatch`` on a real one-node Slurm cluster (issue 9 §4): munged, slurmctld and
slurmd started by the fixture on 127.0.0.1 (slurm_cluster), the script submitted with ``sbatch``, the
job followed to COMPLETED with ``scontrol``, the run directory's funnel checked, and nothing of Ray or
Slurm left running after. Skips without root or without slurm-wlm and munge."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psutil
import pytest
from caption_project import EXPECTED, RECIPE, funnel_of, write_project
from ray_head import free_port, silent_ray_env
from slurm_cluster import problem, slurm_cluster

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "jobs" / "slurm" / "curate.sbatch"
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def slurm():
    reason = problem()
    if reason:
        pytest.skip(reason)
    with slurm_cluster() as cluster:
        pids = [p.pid for p in cluster.daemons.values()]
        yield cluster
    assert [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE] == []


@pytest.fixture
def short_tmp():
    """Ray's unix socket paths must stay under 108 bytes: a short temp dir, not pytest's."""
    path = Path(tempfile.mkdtemp(prefix="csr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def processes_naming(path: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(path) in arg for arg in proc.info["cmdline"] or []):
            found.append(" ".join(proc.info["cmdline"])[:200])
    return found


def test_slurm_daemons_listen_on_loopback_only(slurm) -> None:
    """Before NoInAddrAny,NoCtldInAddrAny: slurmctld listened on 0.0.0.0."""
    pids = {p.pid: name for name, p in slurm.daemons.items()}
    listening = {(pids[c.pid], c.laddr.ip) for c in psutil.net_connections("inet")
                 if c.pid in pids and c.status == psutil.CONN_LISTEN}
    assert listening == {("slurmctld", "127.0.0.1"), ("slurmd", "127.0.0.1")}


@pytest.mark.slow  # ~100 s: Ray's head and curate run in a Slurm job on 2 busy cores
def test_sbatch_runs_the_recipe_and_stops_ray(slurm, tmp_path: Path, short_tmp: Path) -> None:
    write_project(tmp_path / "project")
    run_dir = tmp_path / "run"
    env = silent_ray_env(short_tmp / "home") | {"CURATE_RAY_PORT": str(free_port()), "CURATE_RAY_TMPDIR": str(short_tmp)}
    job_id = slurm.sbatch(SCRIPT, [RECIPE, "--output", str(run_dir)], env=env, cwd=tmp_path / "project")
    job = slurm.wait(job_id, JOB_TIMEOUT_S)
    output = slurm.output(job_id)
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), output[-4000:]
    assert "run directory:" in output
    assert funnel_of(run_dir) == EXPECTED
    assert not (short_tmp / f"ray-{job_id}").exists()  # the script's EXIT trap removed Ray's session files
    assert processes_naming(short_tmp) == []
