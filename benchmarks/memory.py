"""Peak memory of a streaming run: 1M rows through caption rules + url_dedup + writer.

laion-10k replicated to ``--rows`` rows (default 1,000,000; default pyarrow row groups,
or ``--row-group-size``) is written as parquet in a temp dir and run with ``curate run`` as a
subprocess (``resources.cpus`` 2, ``resources.object_store_memory_mb`` as given). The RSS of
the process tree (the ``curate`` driver and every descendant: raylet, GCS, Ray workers, ...)
is sampled with psutil every 0.2 s; PSS (shared pages divided among their sharers, so not
counted twice) every fifth sample. Reports peak total RSS, peak driver RSS, peak PSS, and
the RSS by process role at the peak.

Variants (``--variants``): ``dedup`` (laion_caption, datacomp_caption, url_dedup) and
``nodedup`` (without url_dedup). url_dedup drops ~99% of the replicated rows as
``duplicate_url``; the rows still stream through every stage and the ledger.
Target: peak total RSS < 3 GB (3,000 MB) for every variant.

    .venv/bin/python benchmarks/memory.py [--laion PATH] [--rows 1000000] [--object-store-mb 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_MB = 3000
MB = 1_000_000


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laion", type=Path, default=C.LAION, help="laion-10k parquet (columns URL, TEXT)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rows-per-unit", type=int, default=20_000)
    parser.add_argument("--row-group-size", type=int, default=None,
                        help="parquet row group size (default: rows per unit; 0: pyarrow's default, 1Mi rows)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=500, help="resources.object_store_memory_mb (0: Ray's default)")
    parser.add_argument("--variants", default="dedup,nodedup", help="comma-separated: dedup, nodedup")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args()


def _spec(data: Path, out: Path, args, dedup: bool) -> dict:
    stages = [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}]
    if dedup:
        stages.append({"stage": "url_dedup"})
    resources = {"cpus": args.cpus}
    if args.object_store_mb:
        resources["object_store_memory_mb"] = args.object_store_mb
    return {
        "name": "bench-memory",
        "input": {"path": str(data), "url_column": "url", "caption_column": "caption", "rows_per_unit": args.rows_per_unit},
        "stages": stages,
        "output": {"path": str(out), "samples_per_shard": 10_000},
        "resources": resources,
    }


def _run(variant: str, data: Path, work: Path, args) -> dict:
    import yaml

    out = work / f"out-{variant}"
    spec_path = work / f"{variant}.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(data, out, args, dedup=variant == "dedup")))
    cmd = [C.CURATE, "run", str(spec_path), "--overwrite"]
    C.log("$", " ".join(cmd))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, env=env)
    with C.TreeSampler(proc.pid, interval=args.interval) as sampler:
        code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"curate run ({variant}) exited {code}")
    stats = json.loads((out / "stats" / "stats.json").read_text())
    drops = {s["stage"]: s["reasons"] for s in stats["stages"] if s["dropped"]}
    result = {
        "variant": variant,
        "stages": [s["stage"] for s in stats["stages"]][1:],
        "wall_s": round(wall, 1),
        "rows": stats["rows"],
        "kept": stats["kept"],
        "dropped": drops,
        "peak_total_rss_mb": round(sampler.peak_total / MB),
        "peak_driver_rss_mb": round(sampler.peak_root / MB),
        "peak_total_pss_mb": round(sampler.peak_pss_total / MB),
        "processes_at_peak": sampler.peak_processes,
        "rss_by_role_at_peak": {k: {"processes": n, "rss_mb": round(total / MB), "largest_mb": round(top / MB)}
                                for k, (n, total, top) in sorted(sampler.peak_breakdown.items(), key=lambda kv: -kv[1][1])},
        "samples": sampler.samples,
        "target_met": sampler.peak_total < TARGET_MB * MB,
    }
    C.log(result)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.laion, "laion-10k parquet")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= {"dedup", "nodedup"}:
        sys.exit(f"unknown variant in {args.variants!r}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="curate-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = C.machine()
    row_group = args.rows_per_unit if args.row_group_size is None else (args.row_group_size or 1024 * 1024)
    try:
        data = C.replicated_laion(args.laion, args.rows, work / "input.parquet", row_group_size=row_group)
        C.log(f"input: {args.rows:,} rows ({data.stat().st_size / MB:.0f} MB parquet, row groups of {row_group:,})")
        runs = [_run(v, data, work, args) for v in variants]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "memory",
        "rows": args.rows,
        "rows_per_unit": args.rows_per_unit,
        "parquet_row_group_rows": row_group,
        "cpus": args.cpus,
        "object_store_memory_mb": args.object_store_mb or "ray default",
        "sample_interval_s": args.interval,
        "runs": runs,
        "peak_total_rss_mb": max(r["peak_total_rss_mb"] for r in runs),
        "peak_driver_rss_mb": max(r["peak_driver_rss_mb"] for r in runs),
        "target": f"peak total RSS of the process tree < {TARGET_MB} MB",
        "target_met": all(r["target_met"] for r in runs),
        "note": "RSS sums count pages shared between processes once per process; PSS does not",
        "machine": env,
    }
    C.emit(result)


if __name__ == "__main__":
    main()
