"""The ``download`` stage as Ray tasks vs as an actor pool, in whole pipeline runs (issue 6 §5:
stages with ``setup`` run in actor pools; is that right for an I/O stage whose setup is cheap?).

2,000 distinct loopback URLs (the coco-mini photos behind ``?i=N``, one file server in its own
process), ``rows_per_unit`` 500, 256 px ``border`` JPEG, 64 threads, ``resources.cpus`` 2: the
pipeline of benchmarks/download.py. Each run is ``run_pipeline`` with its own embedded Ray (as
``curate run`` starts one), so both forms pay Ray's start-up and their workers' imports; wall
time is the whole call. The forms are the download stage with ``runs_as_tasks`` True (tasks,
fused by Ray Data with the reader), False (an actor pool from 1 actor up to what fits: the default)
and False with ``resources.actors: [cpus, cpus]`` (a full pool from the start). They rotate for
``--rounds`` rounds, the order shifted every round, so foreign load and disk caches hit all
alike. Figures: each run, the median images/s per form, and each pool's median over the tasks'.

    .venv/bin/python benchmarks/stage_operators.py [--images DIR] [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from curate.stages.download import DownloadStage  # noqa: E402
from curate.stages.registry import register  # noqa: E402


@register
class DownloadAsTasks(DownloadStage):
    kind = "bench_download_tasks"
    runs_as_tasks = True


@register
class DownloadInActors(DownloadStage):
    kind = "bench_download_actors"
    runs_as_tasks = False


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES, help="directory of .jpg photos to serve")
    parser.add_argument("--n", type=int, default=2000, help="number of distinct URLs")
    parser.add_argument("--rows-per-unit", type=int, default=500, help="input.rows_per_unit")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each times every form once")
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs")
    return parser.parse_args()


FORMS = ("tasks", "actors", "actors_full_pool")


def _once(form: str, urls: Path, out: Path, args) -> dict:
    from rich.console import Console

    from curate.pipeline import run_pipeline

    stage = {"stage": f"bench_download_{form.removesuffix('_full_pool')}", "timeout": 10, "threads": 64,
             "allow_private": ["127.0.0.0/8"]}
    if form == "actors_full_pool":
        stage["resources"] = {"actors": [args.cpus, args.cpus]}
    spec = {"input": {"path": str(urls), "rows_per_unit": args.rows_per_unit}, "stages": [stage],
            "output": {"image_size": 256, "resize_mode": "border", "image_format": "jpg"},
            "resources": {"cpus": args.cpus}}
    with C.CpuMeter() as cpu:
        start = time.perf_counter()
        result = run_pipeline(spec, output=str(out), overwrite=True, console=Console(stderr=True, quiet=True))
        wall = time.perf_counter() - start
    kept = result.funnel.kept
    return {"wall_s": round(wall, 2), "images_per_s": round(kept / wall, 1), "successes": kept, **cpu.summary()}


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.images, "coco-mini images")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this script
    env = C.machine()
    server, base = C.start_file_server(args.images)
    runs: dict[str, list[dict]] = {form: [] for form in FORMS}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        work = Path(tempfile.mkdtemp(prefix="curate-bench-operators-"))
        names = sorted(p.name for p in args.images.glob("*.jpg"))
        urls = [f"{base}{names[i % len(names)]}?i={i}" for i in range(args.n)]
        pq.write_table(pa.table({"url": urls, "caption": [f"a photo, number {i}" for i in range(args.n)]}), work / "urls.parquet")
        for round_no in range(args.rounds):
            for form in FORMS[round_no % 3:] + FORMS[:round_no % 3]:
                runs[form].append(_once(form, work / "urls.parquet", work / form, args))
                C.log(form, runs[form][-1])
    finally:
        C.stop(server)
    rates = {form: [r["images_per_s"] for r in results] for form, results in runs.items()}
    medians = {form: statistics.median(values) for form, values in rates.items()}
    C.emit({
        "benchmark": "stage_operators",
        "urls": args.n, "rows_per_unit": args.rows_per_unit, "rounds": args.rounds, "cpus": args.cpus,
        "runs": runs,
        "median_images_per_s": medians,
        "ratio_vs_tasks_median": {form: round(medians[form] / medians["tasks"], 3) for form in FORMS[1:]},
        "all_downloaded": all(r["successes"] == args.n for results in runs.values() for r in results),
        "machine": env,
    })


if __name__ == "__main__":
    main()
