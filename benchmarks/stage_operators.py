"""The ``download`` stage as Ray tasks vs as an actor pool (issue 6 §5: stages with ``setup`` run in
actor pools; is that right for an I/O stage?).

2,000 distinct loopback URLs (the coco-mini photos behind ``?i=N``, one file server in its own
process) in ``--blocks`` blocks go through ``curate.engine.operators.add_stage`` with the
download stage (256 px ``border`` JPEG, 64 threads) on an embedded Ray of ``--cpus`` CPUs; no
reader, no writer, so only the operator differs. The two forms alternate for ``--rounds`` rounds
(order flipped every round, so foreign load and warm-up hit both alike); every round is a new
dataset, as every ``curate run`` is: task workers are reused from the previous round, actors are
new processes each time (they import and set up again). Figures: the best and the median
images/s of each form, and the ratio actors / tasks of the medians.

    .venv/bin/python benchmarks/stage_operators.py [--images DIR] [--n 2000] [--blocks 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES, help="directory of .jpg photos to serve")
    parser.add_argument("--n", type=int, default=2000, help="number of distinct URLs")
    parser.add_argument("--blocks", type=int, default=4, help="blocks (work units) the URLs are split into")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each times both forms once")
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs")
    return parser.parse_args()


def _table(base: str, images: Path, n: int):
    import pyarrow as pa

    from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE

    names = sorted(p.name for p in images.glob("*.jpg"))
    urls = [f"{base}{names[i % len(names)]}?i={i}" for i in range(n)]
    nulls = pa.nulls(n, pa.string())
    return pa.table({"url": urls, DROP_STAGE: nulls, DROP_REASON: nulls, DROP_DETAIL: nulls})


def _stage(as_tasks: bool):
    from curate.stages.base import ImageOutput
    from curate.stages.download import DownloadParams, DownloadStage

    class DownloadAsTasks(DownloadStage):
        runs_as_tasks = True

    stage = (DownloadAsTasks if as_tasks else DownloadStage)(
        DownloadParams(timeout=10, threads=64, allow_private=["127.0.0.0/8"]))
    stage.image_output = ImageOutput(256, "border")
    return stage


def _once(table, blocks: int, as_tasks: bool) -> dict:
    import pyarrow.compute as pc
    import ray

    from curate.engine.operators import add_stage, runs_in_actors

    stage = _stage(as_tasks)
    assert runs_in_actors(stage) is not as_tasks
    with C.CpuMeter() as cpu:
        start = time.perf_counter()
        ds = add_stage(ray.data.from_arrow(table).repartition(blocks), stage, f"{uuid.uuid4().hex}:0").materialize()
        wall = time.perf_counter() - start
    ok = sum(pc.sum(pc.is_null(ray.get(ref).column("download_status"))).as_py() for ref in ds.to_arrow_refs())
    return {"wall_s": round(wall, 2), "images_per_s": round(ok / wall, 1), "successes": ok, **cpu.summary()}


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.images, "coco-mini images")
    env = C.machine()
    server, base = C.start_file_server(args.images)
    from ray import cloudpickle

    from curate.engine.ray_runtime import EmbeddedRay

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this script
    embedded = EmbeddedRay(num_cpus=args.cpus)
    embedded.start()
    runs: dict[str, list[dict]] = {"tasks": [], "actors": []}
    try:
        table = _table(base, args.images, args.n)
        for round_no in range(args.rounds):
            for form in (("tasks", "actors") if round_no % 2 == 0 else ("actors", "tasks")):
                runs[form].append(_once(table, args.blocks, form == "tasks"))
                C.log(form, runs[form][-1])
    finally:
        embedded.stop(failed=False)
        C.stop(server)
    rates = {form: [r["images_per_s"] for r in results] for form, results in runs.items()}
    medians = {form: statistics.median(values) for form, values in rates.items()}
    C.emit({
        "benchmark": "stage_operators",
        "urls": args.n, "blocks": args.blocks, "rounds": args.rounds, "cpus": args.cpus,
        "tasks": runs["tasks"], "actors": runs["actors"],
        "median_images_per_s": medians, "best_images_per_s": {form: max(v) for form, v in rates.items()},
        "ratio_actors_vs_tasks_median": round(medians["actors"] / medians["tasks"], 3),
        "all_downloaded": all(r["successes"] == args.n for results in runs.values() for r in results),
        "machine": env,
    })


if __name__ == "__main__":
    main()
