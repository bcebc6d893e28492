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


def pin_to_one_core(cpu: int | None = None) -> int:
    """Pin this process to one core (default: the first allowed) and Arrow to one thread, so a
    rate per core is measured; returns the core."""
    import pyarrow as pa

    cpu = cpu if cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    return cpu


def laion_captions(path: Path, rows: int):
    """laion-10k's captions (``TEXT``) replicated to ``rows``, as one Arrow array."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.read_table(path, columns=["TEXT"]).column("TEXT").combine_chunks()
    return pa.concat_arrays([source] * -(-rows // len(source)))[:rows]


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

    def __init__(self, pid: int, interval: float = 0.2, pss_every: int = 5):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_every = pss_every  # PSS (shared pages split between sharers) every n-th sample: it costs more
        self.peak_total = 0
        self.peak_root = 0
        self.peak_processes = 0
        self.peak_breakdown: dict[str, list[int]] = {}
        self.peak_pss_total = 0
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, total RSS)
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

        start = time.perf_counter()
        labels: dict[int, str] = {}
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            with_pss = self.pss_every and self.samples % self.pss_every == 0
            total, root_rss, pss_total, breakdown = 0, 0, 0, {}
            for proc in procs:
                try:
                    if with_pss:
                        info = proc.memory_full_info()
                        rss, pss_total = info.rss, pss_total + info.pss
                    else:
                        rss = proc.memory_info().rss
                    if proc.pid not in labels:
                        labels[proc.pid] = _label(proc)
                    name = labels[proc.pid]
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                entry = breakdown.setdefault(name, [0, 0, 0])  # processes, total RSS, largest RSS
                entry[0], entry[1], entry[2] = entry[0] + 1, entry[1] + rss, max(entry[2], rss)
                if proc.pid == self.root.pid:
                    root_rss = rss
            self.samples += 1
            self.peak_pss_total = max(self.peak_pss_total, pss_total)
            self.timeline.append((round(time.perf_counter() - start, 1), total))
            self.peak_root = max(self.peak_root, root_rss)
            if total > self.peak_total:
                self.peak_total, self.peak_breakdown, self.peak_processes = total, breakdown, len(procs)
            self._stop.wait(self.interval)


def _label(proc) -> str:
    """A process's role: ``ray_worker``, ``raylet``, ``gcs_server``, ``dashboard``... or its name."""
    try:
        cmd = proc.cmdline()
        name = proc.name()
    except Exception:  # noqa: BLE001
        cmd, name = [], "?"
    head = cmd[0] if cmd else name
    if head.startswith("ray::") or name.startswith("ray::") or any("default_worker.py" in c for c in cmd[:3]):
        return "ray_agent" if head.endswith("Agent") else "ray_worker"
    for key in ("raylet", "gcs_server"):
        if os.path.basename(head) == key:
            return key
    for key in ("dashboard/agent.py", "dashboard.py", "log_monitor.py", "monitor.py", "runtime_env/agent"):
        if any(key in c for c in cmd[:3]):
            return key.removesuffix(".py").replace("/", "_")
    return name


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


def tree_cpu_times(pid: int | None = None) -> dict[str, float]:
    """CPU seconds (user+system) so far of a process and its descendants, by role
    (driver = the process itself, workers = Ray workers, ray_system = raylet, GCS, ...)."""
    import psutil

    root = psutil.Process(pid or os.getpid())
    out = {"driver": 0.0, "workers": 0.0, "ray_system": 0.0}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            label = _label(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        busy = times.user + times.system
        if proc.pid == root.pid:
            out["driver"] += busy
        elif label == "ray_worker":
            out["workers"] += busy
        else:
            out["ray_system"] += busy
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {f"{k}_cpu_s": round(after[k] - before.get(k, 0.0), 2) for k in after}
