"""ALIGN's frequency pass (issue 7, Benchmarks): driver memory does not grow with rows.

``curate run`` (a subprocess on an embedded Ray, ``resources.cpus`` 2) of ``align_caption`` +
``align_frequency`` (+ ``rare_words`` with ``--rare-words``) on a synthetic parquet of N rows
with web-like repetition, at each ``--rows`` (default 1M and 10M). The sampler thread of
benchmarks/memory.py reads the driver's RSS (the ``curate`` process itself), the largest Ray
worker's and all workers' every ``--interval`` seconds. Phase one's summaries (2 rows of 25
bytes a sample) are over the 32 MB in-process limit at these sizes, so the reduce is a Ray Data
shuffle, as on a cluster.

The pool, per row i (vectorised, 1M rows at a time):

* captions: 85% unique (one of 5,000 templates of 1-22 words plus a per-row token), 10% from
  100,000 "common" texts (each on ~N/1M images), 5% from 100 boilerplate texts of 3-4 words
  ("click to enlarge", "view larger image", ...: each shared by N/2,000 images);
* URLs: 97% unique, 2% one of 10,000 reused images, 1% one of 20 placeholder images (each
  with N/2,000 alt-texts, like a spacer.gif).

Also, first, the per-core rates of the stages on 1M of those rows in this process (pinned to
one core, Arrow on one thread; per CPU-second, as the machine is shared): captions/s of ``align_caption`` process+decide,
``align_frequency`` observe and reduce, ``rare_words`` observe, reduce and process+decide.

Target: the driver's peak RSS grows by less than 40 MB from the smallest to the largest row count.

    .venv/bin/python benchmarks/align_frequency.py [--rows 1000000,10000000] [--rows-per-unit 100000] [--rare-words]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from memory import sampled_run  # noqa: E402

TARGET_GROWTH_MB = 40
MB = 1_000_000
SLICE = 1_000_000
_WORDS = ["a", "photo", "of", "the", "red", "blue", "green", "old", "new", "small", "big", "dog", "cat", "house", "car",
          "tree", "street", "city", "beach", "man", "woman", "child", "with", "on", "in", "at", "near", "by", "for", "sale",
          "free", "stock", "image", "vintage", "modern", "wooden", "black", "white", "summer", "winter"]
_BOILERPLATE = ["click to enlarge", "image not available", "stock photo royalty free", "photo by the author",
                "no image available", "company logo png", "wallpaper 1920x1080 hd", "view larger image",
                "embedded image permalink"]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--rows-per-unit", type=int, default=100_000)
    parser.add_argument("--rare-words", action="store_true", help="also run rare_words (min_count 20) in the pipeline")
    parser.add_argument("--rate-rows", type=int, default=1_000_000, help="rows for the in-process rates (0: skip)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args()


def pool_slice(start: int, stop: int):
    """Rows ``start``..``stop`` of the synthetic pool (a pure function of the row numbers)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(start)
    index = np.arange(start, stop)
    n = len(index)
    template_rng = np.random.default_rng(0)
    templates = pa.array([" ".join(template_rng.choice(_WORDS, template_rng.integers(1, 23))) for _ in range(5000)])
    boilerplate = pa.array(_BOILERPLATE + [f"product image number {k}" for k in range(100 - len(_BOILERPLATE))])
    draw = rng.random(n)
    unique = pc.binary_join_element_wise(pc.take(templates, pa.array(index % 5000)), pc.cast(pa.array(index), pa.string()),
                                         " ")
    common_id = rng.integers(0, 100_000, n)
    common = pc.binary_join_element_wise(pc.take(templates, pa.array(common_id % 5000)),
                                         pc.cast(pa.array(common_id), pa.string()), " common ")
    boiler = pc.take(boilerplate, pa.array(rng.integers(0, len(boilerplate), n)))
    caption = pc.case_when(pc.make_struct(pa.array(draw < 0.85), pa.array(draw < 0.95)), unique, common, boiler)
    url_draw = rng.random(n)
    image = np.where(url_draw < 0.97, index, np.where(url_draw < 0.99, -1 - rng.integers(0, 10_000, n),
                                                       -100_000 - rng.integers(0, 20, n)))
    host = pc.cast(pa.array(np.abs(image) % 97), pa.string())
    url = pc.binary_join_element_wise("http://img", host, ".example.com/", pc.cast(pa.array(image), pa.string()), ".jpg", "")
    return pa.table({"url": url, "caption": caption})


def write_pool(path: Path, rows: int) -> Path:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pool_slice(0, 1).schema) as writer:
        for start in range(0, rows, SLICE):
            writer.write_table(pool_slice(start, min(rows, start + SLICE)), row_group_size=100_000)
    return path


def stage_rates(rows: int) -> dict:
    """Per-core captions/s of each stage's parts, in this process on one pinned core."""
    import numpy as np
    import pyarrow as pa

    from curate.schema import ROW, UNIT
    from curate.stages.align import AlignCaptionFilter, AlignCaptionParams, AlignFrequencyFilter, AlignFrequencyParams
    from curate.stages.rare_words import RareWordsFilter, RareWordsParams

    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    pa.set_cpu_count(1)
    try:
        table = pool_slice(0, rows)
        table = table.append_column(UNIT, pa.array(np.zeros(rows, np.int32))).append_column(
            ROW, pa.array(np.arange(rows, dtype=np.int32)))
        caption = AlignCaptionFilter(AlignCaptionParams())
        frequency = AlignFrequencyFilter(AlignFrequencyParams())
        rare = RareWordsFilter(RareWordsParams(min_count=20))
        timings, results = {}, {}

        def timed(label, fn):  # CPU seconds of this process: wall time on a shared machine measures the neighbours
            start = time.process_time()
            results[label] = fn()
            timings[label] = time.process_time() - start

        timed("align_caption_process_decide", lambda: caption.decide(caption.process(table)))
        timed("align_frequency_observe", lambda: frequency.observe(table))
        timed("align_frequency_reduce", lambda: frequency.reduce(results["align_frequency_observe"]))
        timed("rare_words_observe", lambda: rare.observe(table))
        timed("rare_words_reduce", lambda: rare.reduce(results["rare_words_observe"]))
        rare.load_state(results["rare_words_reduce"])
        timed("rare_words_process_decide", lambda: rare.decide(rare.process(table)))
        return {"rows": rows, "cores": 1, "vocabulary": len(rare.vocabulary),
                "captions_per_cpu_s": {label: round(rows / seconds) for label, seconds in timings.items()}}
    finally:
        os.sched_setaffinity(0, affinity)
        pa.set_cpu_count(len(affinity))


def _spec(data: Path, out: Path, args) -> dict:
    stages = [{"stage": "align_caption"}, {"stage": "align_frequency"}]
    if args.rare_words:
        stages.append({"stage": "rare_words", "min_count": 20})
    resources = {"cpus": args.cpus} | ({"object_store_memory_mb": args.object_store_mb} if args.object_store_mb else {})
    return {"name": "bench-align", "input": {"path": str(data), "rows_per_unit": args.rows_per_unit},
            "stages": stages, "output": {"path": str(out), "samples_per_shard": 100_000}, "resources": resources}


def _run(rows: int, data: Path, work: Path, args) -> dict:
    out = work / f"out-{rows}"
    stats, sampler, wall = sampled_run(_spec(data, out, args), work / f"align-{rows}.yaml", args.interval)
    result = {
        "rows": stats["rows"], "kept": stats["kept"],
        "dropped": {s["stage"]: s["reasons"] for s in stats["stages"] if s["dropped"]},
        "wall_s": round(wall, 1), "rows_per_s": round(rows / wall),
        "peak_driver_rss_mb": round(sampler.driver / MB), "peak_worker_rss_mb": round(sampler.worker / MB),
        "peak_workers_rss_mb": round(sampler.workers / MB), "samples": sampler.samples,
    }
    C.log(result)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    C.claim_stdout()
    args = _args()
    row_counts = sorted(int(r) for r in args.rows.split(","))
    machine = C.machine()
    rates = stage_rates(args.rate_rows) if args.rate_rows else None
    if rates:
        C.log(rates)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="curate-bench-align-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for rows in row_counts:
            data = write_pool(work / f"pool-{rows}.parquet", rows)
            C.log(f"input: {rows:,} rows, {data.stat().st_size / MB:.0f} MB parquet")
            runs.append(_run(rows, data, work, args))
            data.unlink()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    growth = runs[-1]["peak_driver_rss_mb"] - runs[0]["peak_driver_rss_mb"]
    C.emit({
        "benchmark": "align_frequency", "rows": row_counts, "rows_per_unit": args.rows_per_unit,
        "stages": [s["stage"] for s in _spec(Path("-"), Path("-"), args)["stages"]], "cpus": args.cpus,
        "object_store_memory_mb": args.object_store_mb, "runs": runs, "stage_rates": rates,
        "driver_growth_mb": growth,
        "target": f"driver peak RSS grows < {TARGET_GROWTH_MB} MB from {row_counts[0]:,} to {row_counts[-1]:,} rows",
        "target_met": growth < TARGET_GROWTH_MB,
        "load_average_at_end": os.getloadavg(),
        "machine": machine,
    })


if __name__ == "__main__":
    main()
