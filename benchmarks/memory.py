"""Driver memory does not grow with the input (issue 6 §4): peak RSS of the ``curate run`` driver,
and of its Ray workers, on 1M and 8M rows.

A synthetic pool (``--format csv`` or ``parquet``; urls repeat every ``--distinct-urls`` rows, so
url_dedup drops the rest; captions of 1-12 words, some under DataComp's 3 words) is written under
a temp dir and run with ``curate run`` as a subprocess on an embedded Ray (``resources.cpus``,
``object_store_memory_mb`` as given). Variants: ``captions`` (laion_caption, datacomp_caption)
and ``dedup`` (the same + url_dedup). Every ``--interval`` seconds the sampler reads the RSS of
the driver (the ``curate`` process itself), of each Ray worker (``ray::`` processes, the
largest one and their sum) and of the whole process tree.

Target: the driver's peak RSS grows by less than 40 MB from the smallest to the largest row
count (issue 6: it grew by ~140 MB from 1M to 8M rows, ~20 bytes a row).

    .venv/bin/python benchmarks/memory.py [--rows 1000000,8000000] [--variants captions,dedup] [--format csv]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_GROWTH_MB = 40
MB = 1_000_000
_WORDS = ["a", "photo", "of", "the", "red", "dog", "on", "grass", "near", "old", "house", "with", "two", "small",
          "cats", "at", "sunset"]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,8000000", help="comma-separated row counts")
    parser.add_argument("--variants", default="captions,dedup", help="comma-separated: captions, dedup")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--distinct-urls", type=int, default=500_000)
    parser.add_argument("--rows-per-unit", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args()


def write_pool(path: Path, rows: int, distinct_urls: int, fmt: str) -> Path:
    """``rows`` synthetic (url, caption) rows, written in slices of 1M (the writer's memory stays flat)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    captions = [" ".join(_WORDS[:n]) for n in range(1, 13)]
    writer = None
    for start in range(0, rows, 1_000_000):
        index = np.arange(start, min(rows, start + 1_000_000))
        table = pa.table({
            "url": pa.array([f"http://img{i % 97}.example.com/{i % distinct_urls}.jpg" for i in index]),
            "caption": pa.array([captions[i % 12] for i in (index * 7919) % 1_000_003]),
        })
        if writer is None:
            writer = pacsv.CSVWriter(path, table.schema) if fmt == "csv" else pq.ParquetWriter(path, table.schema)
        if fmt == "csv":
            writer.write_table(table)
        else:
            writer.write_table(table, row_group_size=100_000)
    writer.close()
    return path


class PeakSampler:
    """Peaks over a whole run: the driver's RSS, the largest Ray worker's, all workers', the tree's."""

    def __init__(self, pid: int, interval: float):
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.driver = self.worker = self.workers = self.total = self.samples = 0
        self._roles: dict[int, str] = {}  # pid -> role (a Ray worker keeps its role for its life)
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
            workers, total = [], 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    if proc.pid not in self._roles:
                        self._roles[proc.pid] = C._label(proc)
                    worker = self._roles[proc.pid] == "ray_worker"
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                if proc.pid == self.root.pid:
                    self.driver = max(self.driver, rss)
                elif worker:
                    workers.append(rss)
            self.worker = max(self.worker, *workers, 0)
            self.workers = max(self.workers, sum(workers))
            self.total = max(self.total, total)
            self.samples += 1
            self._stop.wait(self.interval)


def _spec(data: Path, out: Path, args, variant: str) -> dict:
    stages = [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}]
    if variant == "dedup":
        stages.append({"stage": "url_dedup"})
    resources = {"cpus": args.cpus} | ({"object_store_memory_mb": args.object_store_mb} if args.object_store_mb else {})
    return {"name": "bench-memory", "input": {"path": str(data), "rows_per_unit": args.rows_per_unit},
            "stages": stages, "output": {"path": str(out), "samples_per_shard": 100_000}, "resources": resources}


def sampled_run(spec: dict, spec_path: Path, interval: float) -> tuple[dict, PeakSampler, float]:
    """``curate run`` of ``spec`` as a command (Ray start-up included) under a :class:`PeakSampler`;
    returns the run's merged stats, the sampler and the wall time."""
    import yaml

    spec_path.write_text(yaml.safe_dump(spec))
    cmd = [C.CURATE, "run", str(spec_path), "--overwrite"]
    C.log("$", " ".join(cmd))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, env=env)
    with PeakSampler(proc.pid, interval) as sampler:
        code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"curate run {spec_path.name} exited {code}")
    stats = json.loads((Path(spec["output"]["path"]) / "stats" / "stats.json").read_text())
    return stats, sampler, wall


def _run(variant: str, rows: int, data: Path, work: Path, args) -> dict:
    out = work / f"out-{variant}-{rows}"
    stats, sampler, wall = sampled_run(_spec(data, out, args, variant), work / f"{variant}-{rows}.yaml", args.interval)
    result = {
        "variant": variant, "rows": stats["rows"], "kept": stats["kept"], "wall_s": round(wall, 1),
        "peak_driver_rss_mb": round(sampler.driver / MB), "peak_worker_rss_mb": round(sampler.worker / MB),
        "peak_workers_rss_mb": round(sampler.workers / MB), "peak_tree_rss_mb": round(sampler.total / MB),
        "samples": sampler.samples,
    }
    C.log(result)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    C.claim_stdout()
    args = _args()
    row_counts = sorted(int(r) for r in args.rows.split(","))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= {"captions", "dedup"}:
        sys.exit(f"unknown variant in {args.variants!r}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="curate-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for rows in row_counts:
            data = write_pool(work / f"pool-{rows}.{args.format}", rows, args.distinct_urls, args.format)
            C.log(f"input: {rows:,} rows, {data.stat().st_size / MB:.0f} MB {args.format}")
            runs += [_run(v, rows, data, work, args) for v in variants]
            data.unlink()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    growth = {}
    for variant in variants:
        mine = {r["rows"]: r["peak_driver_rss_mb"] for r in runs if r["variant"] == variant}
        growth[variant] = mine[row_counts[-1]] - mine[row_counts[0]]
    C.emit({
        "benchmark": "memory", "format": args.format, "rows": row_counts, "rows_per_unit": args.rows_per_unit,
        "distinct_urls": args.distinct_urls, "cpus": args.cpus, "object_store_memory_mb": args.object_store_mb,
        "runs": runs,
        "driver_growth_mb": growth,
        "target": f"driver peak RSS grows < {TARGET_GROWTH_MB} MB from {row_counts[0]:,} to {row_counts[-1]:,} rows",
        "target_met": all(g < TARGET_GROWTH_MB for g in growth.values()),
        "load_average_at_end": os.getloadavg(),
        "machine": C.machine(),
    })


if __name__ == "__main__":
    main()
