"""Shared helpers for the benchmarks (not a benchmark itself).

Every benchmark prints exactly one JSON object on stdout and everything else on stderr:
:func:`claim_stdout` moves file descriptor 1 onto stderr at start-up (so Ray, native
libraries and child processes cannot write to stdout by accident) and :func:`emit` writes
the result to the saved real stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LAION = SHARED_DATA / "laion-10k" / "test_10000.parquet"
COCO_IMAGES = SHARED_DATA / "coco-mini" / "images"
PYTHON = sys.executable
CURATE = str(Path(PYTHON).with_name("curate"))

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

_REAL_STDOUT: int | None = None


def claim_stdout() -> None:
    """From now on fd 1 is stderr; only :func:`emit` writes to the real stdout."""
    global _REAL_STDOUT
    if _REAL_STDOUT is None:
        sys.stdout.flush()
        _REAL_STDOUT = os.dup(1)
        os.dup2(2, 1)


def emit(result: dict) -> None:
    text = json.dumps(result, indent=2) + "\n"
    if _REAL_STDOUT is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        os.write(_REAL_STDOUT, text.encode())


def log(*parts) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def require(path: Path, what: str) -> Path:
    if not Path(path).exists():
        sys.exit(f"{what} not found at {path} (pass its path as an argument)")
    return Path(path)


def replicated_laion(source: Path, rows: int, dest: Path, row_group_size: int = 100_000) -> Path:
    """laion-10k repeated (url, caption) until ``rows`` rows, written as parquet at ``dest``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source, columns=["URL", "TEXT"]).rename_columns(["url", "caption"]).combine_chunks()
    reps = -(-rows // table.num_rows)
    big = pa.concat_tables([table] * reps).slice(0, rows)
    pq.write_table(big, dest, row_group_size=row_group_size)
    return dest


def round_sig(value: float, digits: int = 4) -> float:
    if value == 0 or value != value:
        return value
    from math import floor, log10

    return round(value, -int(floor(log10(abs(value)))) + digits - 1)


class TreeSampler:
    """Samples the RSS of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_root = 0
        self.peak_processes = 0
        self.peak_breakdown: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total, root_rss, breakdown = 0, 0, {}
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    name = _label(proc)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                breakdown[name] = breakdown.get(name, 0) + rss
                if proc.pid == self.root.pid:
                    root_rss = rss
            self.samples += 1
            self.peak_root = max(self.peak_root, root_rss)
            if total > self.peak_total:
                self.peak_total, self.peak_breakdown, self.peak_processes = total, breakdown, len(procs)
            self._stop.wait(self.interval)


def _label(proc) -> str:
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001
        cmd = []
    text = " ".join(cmd)
    for key in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "default_worker"):
        if key in text:
            return key
    if "ray::" in proc.name() or "ray::" in text:
        return "default_worker"
    return proc.name()


def start_file_server(directory: Path) -> tuple[subprocess.Popen, str]:
    """The loopback image server in its own process; returns (process, base URL)."""
    proc = subprocess.Popen([PYTHON, str(Path(__file__).with_name("_http_server.py")), str(directory)],
                            stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"file server did not start: {line!r}")
    return proc, line


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_run(cmd: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    log("$", " ".join(cmd))
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, **kwargs)
    return time.perf_counter() - start, done


class CpuMeter:
    """System-wide CPU use over a section, from /proc/stat: how busy the machine was
    (``busy_frac`` 1.0 = every core busy the whole time), to tell a CPU-bound run from one
    that waits, and a disturbed one (foreign load) from a clean one."""

    def __enter__(self):
        self.start = _proc_stat()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        end = _proc_stat()
        delta = [b - a for a, b in zip(self.start, end, strict=True)]
        total = sum(delta[:8]) or 1
        idle = delta[3] + delta[4]
        self.busy_frac = round(1 - idle / total, 3)
        self.steal_frac = round(delta[7] / total, 3)

    def summary(self) -> dict:
        return {"cpu_busy_frac": self.busy_frac, "cpu_steal_frac": self.steal_frac}


def _proc_stat() -> list[int]:
    try:
        with open("/proc/stat") as handle:
            return [int(x) for x in handle.readline().split()[1:11]]
    except OSError:
        return [0] * 10


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "loadavg_1m_at_start": round(os.getloadavg()[0], 2), "python": platform.python_version()}
