"""A real Ray head with its job server on 127.0.0.1 for tests, started with ``ray start --head --block``
in its own temp dir, on free ports, in an environment that keeps it silent (:func:`silent_ray_env`).

Out of the box a ``ray start`` head reaches off the machine three ways (seen with ``strace -f`` in
a network namespace whose only other interface is a made-up 10.77.0.1, ``netns_probe.py``):
the node IP 127.0.0.1 is replaced by the "external" one, found by a UDP connect to 8.8.8.8:53,
and every server then binds it; the dashboard's usage-stats module, usage stats off included,
reads ``~/ray_bootstrap_config.yaml`` and, missing, asks cloud metadata (169.254.169.254:80 and
``metadata.google.internal`` through DNS) what cloud it is on; and it sends a "usage stats
disabled" report to https://usage-stats.ray.io/ for a cluster that ``ray start`` made (Ray 2.60.0,
``ray/_common/usage/usage_lib.py``, ``ray/dashboard/modules/usage_stats/usage_stats_head.py``).
The environment turns each off: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray keeps a loopback node
IP, as on macOS), a ``HOME`` of the head's own holding an empty bootstrap config, and
``RAY_USAGE_STATS_REPORT_URL`` on a loopback port nothing listens on. ``test_head_is_silent`` checks it.

``ray stop`` is never used: it stops every Ray of the user on the machine. SIGTERM to ``ray start
--block`` stops this head's processes; any left that name its temp dir are killed after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
START_ATTEMPTS = 2
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def silent_ray_env(home: Path) -> dict[str, str]:
    """This process's environment minus Ray's variables, plus what keeps a ``ray start`` head on loopback."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return env | {
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` and `ray` in the job: this venv's
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": f"http://127.0.0.1:{free_port()}/",
        "RAY_AUTH_MODE": "disabled",  # no token between the test's processes
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }


def head_command(temp: Path, dashboard_port: int, num_cpus: int = 2) -> list[str]:
    """``ray start`` for a one-node head on 127.0.0.1; every fixed default port (6379, 8265, 10001, 52365) is a free one."""
    return [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
            "--include-dashboard", "true", "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--num-cpus", str(num_cpus),
            "--object-store-memory", str(200 * 1024 * 1024), "--temp-dir", str(temp), "--disable-usage-stats"]


class HeadExited(RuntimeError):
    """``ray start`` gave up during start-up."""


@dataclass
class RayHead:
    address: str  # the job server, http://127.0.0.1:PORT
    temp: Path
    env: dict[str, str]
    process: subprocess.Popen


def wait_for_job_server(address: str, process: subprocess.Popen, log: Path) -> None:
    """Until the job API answers and the dashboard knows the head node alive. Each comes on its own:
    ``/api/version`` answers from the dashboard's main process while its job module (a subprocess)
    still starts and drops a posted job; then the job module refuses jobs ("Head node id has not yet
    been persisted in GCS") until the node module has seen the head node, 60 s later at load 40."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HeadExited(f"ray start exited {process.returncode}: {log.read_text()[-3000:]}")
        if _answers(f"{address}/api/jobs/") and _alive_hosts(address):
            return
        time.sleep(1)
    raise RuntimeError(f"no job server at {address} after {START_TIMEOUT_S} s: {log.read_text()[-3000:]}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status == 200
    except OSError:
        return False


def _alive_hosts(address: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{address}/nodes?view=hostNameList", timeout=10) as answer:
            return json.loads(answer.read())["data"]["hostNameList"]
    except (OSError, ValueError, KeyError):
        return []


@contextlib.contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[RayHead]:
    """A started head; a start that fails (``ray start`` gives a raylet 30 s to register, hard-coded in
    Ray 2.60's node.py, which a 2-core machine at load 36 under strace missed once) is tried again."""
    for attempt in range(START_ATTEMPTS):
        head = _start(num_cpus)
        try:
            wait_for_job_server(head.address, head.process, head.temp / "ray-start.log")
            break
        except HeadExited:
            stop(head)
            if attempt == START_ATTEMPTS - 1:
                raise
        except BaseException:
            stop(head)
            raise
    try:
        yield head
    finally:
        stop(head)


def _start(num_cpus: int) -> RayHead:
    # Ray's unix socket paths must stay under 108 bytes: a short temp dir, not pytest's.
    temp = Path(tempfile.mkdtemp(prefix="crj", dir="/tmp"))
    env = silent_ray_env(temp / "home")
    dashboard_port = free_port()
    with open(temp / "ray-start.log", "w") as out:
        process = subprocess.Popen(head_command(temp, dashboard_port, num_cpus), env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return RayHead(f"http://127.0.0.1:{dashboard_port}", temp, env, process)


def stop(head: RayHead) -> None:
    """SIGTERM to ``ray start --block`` (it stops its node's processes), then whatever still names the temp dir."""
    from curate.engine.ray_runtime import _kill_processes_naming

    if head.process.poll() is None:
        head.process.send_signal(signal.SIGTERM)
        try:
            head.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            head.process.kill()
            head.process.wait()
    _kill_processes_naming(head.temp)
    shutil.rmtree(head.temp, ignore_errors=True)


def main() -> int:
    """``python ray_head.py WORKING_DIR RECIPE RUN_DIR``: a head, one ``curate submit`` to it, the head stopped;
    exits with the submit's code (what the network-namespace probe runs)."""
    working_dir, recipe, run_dir = sys.argv[1:4]
    with ray_head() as head:
        rc = subprocess.run([str(BIN / "curate"), "submit", recipe, "--address", head.address, "--working-dir",
                             working_dir, "--output", run_dir], env=head.env, cwd=working_dir).returncode
        if rc:
            for name in ("dashboard_JobHead.log", "dashboard_agent.log"):
                for log in head.temp.glob(f"session_2*/logs/{name}"):
                    print(f"--- {log}", log.read_text()[-1500:], sep="\n", file=sys.stderr)
        return rc


if __name__ == "__main__":
    sys.exit(main())
