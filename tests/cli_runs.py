"""``curate`` as a subprocess, the way the kill-and-resume tests run it: its own process group
when asked (so SIGKILL reaches its Ray too), Ray's auth off, output unbuffered and captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CURATE = [sys.executable, "-m", "curate.cli"]


def curate_run(spec_path: Path, out: Path | str, **popen) -> subprocess.Popen:
    """Start ``curate run SPEC --output OUT``; stdout and stderr together, as text."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.Popen([*CURATE, "run", str(spec_path), "--output", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
