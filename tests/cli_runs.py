"""``curate`` as a subprocess, the way the kill-and-resume tests run it: its own process group
when asked (so SIGKILL reaches its Ray too), Ray's auth off, output unbuffered and captured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CURATE = [sys.executable, "-m", "curate.cli"]


def curate_run(spec_path: Path, out: Path | str, **popen) -> subprocess.Popen:
    """Start ``curate run SPEC --output OUT``; stdout and stderr together, as text."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.Popen([*CURATE, "run", str(spec_path), "--output", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def kill_after_first_unit(spec_path: Path, out: Path, timeout: float = 240) -> int:
    """Start ``curate run`` in its own process group, SIGKILL it (and its Ray) as soon as one
    unit is committed, and return how many unit markers were committed by then."""
    proc = curate_run(spec_path, out, start_new_session=True)
    markers = out / "stats" / "units"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if markers.is_dir() and any(markers.glob("*.json")):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "run finished before it could be interrupted:\n" + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(markers.glob("*.json")))
