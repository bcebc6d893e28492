"""A one-node Slurm cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd from Debian's
``munge`` and ``slurm-wlm`` (22.05), each in the foreground as a child of the test, with every file
(key, socket, state, spool, logs, pid files) in one temp dir; nothing under /etc or /var is used.

- the node is ``localhost`` (``slurmd -N localhost``, ``NodeAddr=127.0.0.1``), the controller
  ``localhost(127.0.0.1)``; ``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny`` makes slurmd and
  slurmctld bind that address instead of 0.0.0.0 (checked: both listened on 0.0.0.0 without it);
- munged has a key of its own, a socket in the temp dir and ``--origin=127.0.0.1`` (else it looks
  up this machine's name); Slurm finds it through ``AuthInfo=socket=``;
- no cgroups (``proctrack/linuxproc``, ``task/none``: a test machine's cgroup tree is not ours),
  no accounting daemon: a job is followed with ``scontrol show job`` (kept ``MinJobAge`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20

SLURM_CONF = """\
ClusterName=curatetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SrunPortRange={srun_ports}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
# Read by slurmd when present beside slurm.conf; proctrack/linuxproc and task/none use no cgroup.
CGROUP_CONF = "CgroupPlugin=autodetect\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n"


def problem() -> str | None:
    """Why a Slurm cluster cannot be started here, or None."""
    missing = [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (Debian: apt-get install slurm-wlm munge; .ci/run installs them)"
    if os.geteuid() != 0:
        return "needs root: slurmd runs jobs as their user and slurmctld as SlurmUser=root"
    return None


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]  # SLURM_CONF for the client commands
    daemons: dict[str, subprocess.Popen]

    def sbatch(self, script: Path, args: list[str], env: dict[str, str], cwd: Path) -> str:
        done = subprocess.run(["sbatch", "--parsable", f"--output={self.root}/job-%j.out", str(script), *args],
                              env=env | self.env, cwd=cwd, capture_output=True, text=True, check=True)
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, ...)."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=os.environ | self.env,
                             capture_output=True, text=True, check=True).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: str, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["JobState"] not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
                return job
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still {job['JobState']} after {timeout} s")

    def output(self, job_id: str) -> str:
        path = self.root / f"job-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_until(check, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"{what} did not come up in {START_TIMEOUT_S} s\n{tails}")


def _node_idle(env: dict[str, str]) -> bool:
    done = subprocess.run(["scontrol", "show", "node", "localhost", "-o"], env=env, capture_output=True, text=True)
    return done.returncode == 0 and re.search(r"State=IDLE\b", done.stdout) is not None


@contextlib.contextmanager
def slurm_cluster(cpus: int = 2) -> Iterator[SlurmCluster]:
    root = Path(tempfile.mkdtemp(prefix="cslurm", dir="/tmp"))
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    ctld_port, slurmd_port, srun_low = free_ports(3)
    (root / "slurm.conf").write_text(SLURM_CONF.format(root=root, ctld_port=ctld_port, slurmd_port=slurmd_port,
                                                      srun_ports=f"{srun_low}-{srun_low + 20}", cpus=cpus))
    (root / "cgroup.conf").write_text(CGROUP_CONF)
    (root / "plugstack.conf").write_text("")
    env = {"SLURM_CONF": str(root / "slurm.conf")}
    daemon_env = os.environ | env
    commands = {
        "munged": ["munged", "--foreground", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
                   f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed",
                   "--origin=127.0.0.1"],
        "slurmctld": ["slurmctld", "-D", "-f", str(root / "slurm.conf")],
        "slurmd": ["slurmd", "-D", "-N", "localhost", "-f", str(root / "slurm.conf")],
    }
    daemons: dict[str, subprocess.Popen] = {}
    cluster = SlurmCluster(root, env, daemons)
    try:
        for name in DAEMONS:
            with open(root / f"{name}.out", "w") as out:
                daemons[name] = subprocess.Popen(commands[name], env=daemon_env, stdout=out, stderr=subprocess.STDOUT)
            if name == "munged":
                _wait_until((root / "munge.socket").exists, "munged", [root / "munged.out"])
        _wait_until(lambda: _node_idle(daemon_env), "the node localhost",
                    [root / f"{n}.out" for n in DAEMONS] + [root / "slurmctld.log", root / "slurmd.log"])
        yield cluster
    finally:
        stop(cluster)


def stop(cluster: SlurmCluster) -> None:
    """slurmd, slurmctld, munged in turn: SIGTERM, then SIGKILL after a grace period; then any job process
    still running from the spool (proctrack/linuxproc leaves a batch script's forks behind when slurmd
    stops: seen after a run under load); the temp dir goes."""
    from curate.engine.ray_runtime import _kill_processes_naming

    for name in reversed(DAEMONS):
        process = cluster.daemons.get(name)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _kill_processes_naming(cluster.root)
    shutil.rmtree(cluster.root, ignore_errors=True)
