"""``curate show`` stays bounded on a run with many units: seconds and parquet files opened for
10 kept rows, 10 rows of a common reason, the one row of a reason only the last unit has, and a
``--uid`` lookup (which scans every file by design), on a caption-only run it makes first.

    .venv/bin/python benchmarks/show_rows.py [--rows 200000] [--rows-per-unit 1000] > result.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def make_run(root: Path, rows: int, rows_per_unit: int) -> Path:
    from curate.pipeline import run_pipeline

    captions = ["two words" if i % 10 == 0 else f"a photo of thing number {i}" for i in range(rows)]
    captions[rows - 5] = "tiny"  # laion_caption's caption_too_short: one row, in the last unit only
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(rows)], "caption": captions}), root / "in.parquet")
    spec = {"name": "show_bench", "input": {"path": str(root / "in.parquet"), "rows_per_unit": rows_per_unit},
            "stages": [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}],
            "output": {"samples_per_shard": rows_per_unit}, "resources": {"cpus": 2}}
    return run_pipeline(spec, output=str(root / "run")).run_dir


def measure(run_dir: Path) -> dict:
    from curate.engine.rundir import RunDir
    from curate.stats import show_rows

    opened = []
    original = show_rows._open

    def counting_open(run, relative):  # counts what show_rows opens; the reads are the real ones
        opened.append(relative)
        return original(run, relative)

    show_rows._open = counting_open
    run = RunDir(run_dir)
    queries = {"kept_n10": lambda: list(itertools.islice(show_rows.kept_rows(run), 10)),
               "common_reason_n10": lambda: list(itertools.islice(
                   show_rows.ledger_rows(run, reason="caption_too_few_words"), 10)),
               "rare_reason_last_unit": lambda: list(itertools.islice(
                   show_rows.ledger_rows(run, reason="caption_too_short"), 10))}
    results = {}
    for name, query in queries.items():
        opened.clear()
        start = time.perf_counter()
        found = query()
        results[name] = {"seconds": round(time.perf_counter() - start, 3), "rows": len(found),
                         "parquets_opened": len(opened)}
    last = pq.read_table(sorted(run_dir.glob("rejects/*.parquet"))[-1], columns=["uid"])["uid"][0].as_py()
    start = time.perf_counter()
    found, scanned = show_rows.find_uid(run, last)
    results["uid_scan"] = {"seconds": round(time.perf_counter() - start, 3), "rows": len(found), "files_scanned": scanned}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rows-per-unit", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_dir = make_run(Path(tmp), args.rows, args.rows_per_unit)
        print(f"run made in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        results = measure(run_dir)
        ledgers = len(list(run_dir.glob("rejects/*.parquet")))
        shards = len(list(run_dir.glob("shards/*.parquet")))
    bounded = all(r["parquets_opened"] <= 2 for k, r in results.items() if k != "uid_scan")
    print(json.dumps({"rows": args.rows, "units": -(-args.rows // args.rows_per_unit), "ledger_files": ledgers,
                      "shard_parquets": shards, **results,
                      "target": "queries other than --uid open <= 2 parquets whatever the run's size",
                      "target_met": bounded}, indent=2))


if __name__ == "__main__":
    main()
