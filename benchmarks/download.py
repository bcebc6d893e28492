"""Download throughput: curate's ``download`` stage + writer vs the img2dataset command line.

2,000 distinct loopback URLs (the coco-mini photos repeated, made distinct by ``?i=N``) are
served by one ThreadingHTTPServer (request_queue_size=1024) in its own process, the same
server for both tools. Both resize to 256 px ``border`` and write JPEG WebDataset shards.

* baseline: ``img2dataset --processes_count 2 --thread_count 64 ...`` (the exact command of
  the brief), wall time of the whole command. Also, unless ``--no-i2d-sharded``, the same
  command with ``--number_sample_per_shard N/2`` so that both of its processes get a shard
  (with its default 10,000 samples per shard, 2,000 URLs are one shard, one process).
* curate: ``curate run`` as a command, whole command (Ray start-up and all): the headline.
  Also ``run_pipeline`` in this process after curate's embedded Ray has started (start-up
  reported apart): the first run pays the workers' imports ("cold"), a second one on the same
  Ray is "warm".

Headline ratio (issue 5 §5): ``curate run`` end to end over the best img2dataset configuration
(2 shards for 2 processes), both whole commands. Target: >= 1.5.

    .venv/bin/python benchmarks/download.py [--images DIR] [--n 2000] [--rows-per-unit 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES, help="directory of .jpg photos to serve")
    parser.add_argument("--n", type=int, default=2000, help="number of distinct URLs")
    parser.add_argument("--rows-per-unit", type=int, default=500, help="curate input.rows_per_unit")
    parser.add_argument("--threads", type=int, default=64, help="download threads (both tools)")
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs / img2dataset processes")
    parser.add_argument("--repeats", type=int, default=1, help="repeat each timed variant, keep the fastest")
    parser.add_argument("--no-i2d-sharded", action="store_true", help="skip the img2dataset 2-shard variant")
    parser.add_argument("--no-e2e", action="store_true", help="skip the `curate run` subprocess figure")
    parser.add_argument("--profile", action="store_true", help="cProfile the download stage in one process (stderr)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    return parser.parse_args()


def _write_urls(base: str, images: Path, n: int, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted(p.name for p in images.glob("*.jpg"))
    if not names:
        sys.exit(f"no .jpg under {images}")
    urls = [f"{base}{names[i % len(names)]}?i={i}" for i in range(n)]
    pq.write_table(pa.table({"url": urls, "caption": [f"a photo, number {i}" for i in range(n)]}), path)


def _count_tar_images(folder: Path) -> int:
    count = 0
    for tar_path in folder.rglob("*.tar"):
        with tarfile.open(tar_path) as tar:
            count += sum(1 for m in tar if m.isfile() and m.name.endswith(".jpg"))
    return count


def _img2dataset(urls: Path, out: Path, args, extra: list[str]) -> dict:
    cmd = [str(Path(C.PYTHON).with_name("img2dataset")), "--url_list", str(urls), "--input_format", "parquet",
           "--url_col", "url", "--caption_col", "caption", "--output_format", "webdataset", "--image_size", "256",
           "--resize_mode", "border", "--processes_count", str(args.cpus), "--thread_count", str(args.threads),
           "--output_folder", str(out), "--timeout", "10", "--retries", "0", "--disable_all_reencoding", "False",
           "--enable_wandb", "False", "--distributor", "multiprocessing", *extra]
    best = None
    for _ in range(args.repeats):
        shutil.rmtree(out, ignore_errors=True)
        with C.CpuMeter() as cpu:
            wall, done = C.timed_run(cmd)
        if done.returncode != 0:
            raise RuntimeError(f"img2dataset exited {done.returncode}")
        stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
        successes = sum(s["successes"] for s in stats)
        in_worker = max((s["duration"] for s in stats), default=float("nan"))
        result = {"wall_s": round(wall, 2), "images_per_s": round(successes / wall, 1), "successes": successes,
                  "images_in_shards": _count_tar_images(out), "shards": len(stats),
                  "slowest_worker_download_s": round(in_worker, 2), **cpu.summary()}
        C.log("img2dataset", extra, result)
        if best is None or result["wall_s"] < best["wall_s"]:
            best = result
    best["command"] = " ".join(cmd)
    return best


def _spec(urls: Path, args) -> dict:
    return {
        "name": "bench-download",
        "input": {"path": str(urls), "url_column": "url", "caption_column": "caption", "rows_per_unit": args.rows_per_unit},
        "stages": [{"stage": "download", "timeout": 10, "threads": args.threads,
                    "allow_private": ["127.0.0.0/8"]}],
        "output": {"image_size": 256, "resize_mode": "border", "image_format": "jpg", "samples_per_shard": 10_000},
        "resources": {"cpus": args.cpus},
    }


def _curate_in_process(urls: Path, out: Path, args) -> dict:
    from curate.engine.ray_runtime import EmbeddedRay

    t0 = time.perf_counter()
    embedded = EmbeddedRay(num_cpus=args.cpus)
    embedded.start()
    ray_start = time.perf_counter() - t0
    from rich.console import Console

    from curate.pipeline import run_pipeline

    spec = _spec(urls, args)
    runs = []
    try:
        for label in ["cold"] + ["warm"] * args.repeats:
            with C.CpuMeter() as cpu:
                start = time.perf_counter()
                result = run_pipeline(spec, output=str(out), overwrite=True, console=Console(stderr=True, quiet=True))
                wall = time.perf_counter() - start
            kept = result.funnel.kept
            runs.append({"run": label, "wall_s": round(wall, 2), "images_per_s": round(kept / wall, 1), "successes": kept,
                         "images_in_shards": _count_tar_images(out / "shards"), **cpu.summary()})
            C.log("curate", runs[-1])
    finally:
        embedded.stop(failed=False)
    warm = min((r for r in runs if r["run"] == "warm"), key=lambda r: r["wall_s"])
    return {"ray_init_s": round(ray_start, 2), "cold": runs[0], "warm": warm,
            "units": -(-args.n // args.rows_per_unit)}


def _curate_subprocess(urls: Path, out: Path, work: Path, args) -> dict:
    import yaml

    spec_path = work / "download.yaml"
    spec = _spec(urls, args)
    spec["output"]["path"] = str(out)
    spec_path.write_text(yaml.safe_dump(spec))
    shutil.rmtree(out, ignore_errors=True)
    with C.CpuMeter() as cpu:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        wall, done = C.timed_run([C.CURATE, "run", str(spec_path), "--overwrite"], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"curate run exited {done.returncode}")
    stats = json.loads((out / "stats" / "stats.json").read_text())
    kept = stats.get("kept")
    result = {"wall_s": round(wall, 2), "images_per_s": round(kept / wall, 1) if kept else None, "successes": kept,
              "images_in_shards": _count_tar_images(out / "shards"), **cpu.summary()}
    C.log("curate run (subprocess)", result)
    return result


def _profile(base: str, images: Path, args) -> None:
    """One process, no Ray: where the stage's time goes (cProfile, to stderr)."""
    import cProfile
    import pstats

    import pyarrow as pa

    from curate.stages.download import DownloadParams, DownloadStage, ImageOutput

    names = sorted(p.name for p in images.glob("*.jpg"))
    stage = DownloadStage(DownloadParams(timeout=10, threads=args.threads, allow_private=["127.0.0.0/8"]))
    stage.image_output = ImageOutput(256, "border")
    stage.setup()
    batch = pa.table({"url": [f"{base}{names[i % len(names)]}?p={i}" for i in range(500)]})
    profiler = cProfile.Profile()
    start = time.perf_counter()
    cpu0 = time.process_time()
    profiler.enable()
    out = stage.process(batch)
    profiler.disable()
    C.log(f"profile: 500 URLs in one process: {time.perf_counter() - start:.2f}s wall, {time.process_time() - cpu0:.2f}s CPU, "
          f"{out.column('download_status').null_count} ok")
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(12)


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.images, "coco-mini images")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="curate-bench-download-"))
    work.mkdir(parents=True, exist_ok=True)
    env = C.machine()
    server, base = C.start_file_server(args.images)
    try:
        urls = work / "urls.parquet"
        _write_urls(base, args.images, args.n, urls)
        i2d = _img2dataset(urls, work / "i2d", args, [])
        i2d_sharded = None
        if not args.no_i2d_sharded:
            per_shard = str(-(-args.n // args.cpus))
            i2d_sharded = _img2dataset(urls, work / "i2d-sharded", args, ["--number_sample_per_shard", per_shard])
        curate = _curate_in_process(urls, work / "curate", args)
        e2e = None if args.no_e2e else _curate_subprocess(urls, work / "curate-e2e", work, args)
        if args.profile:
            _profile(base, args.images, args)
    finally:
        C.stop(server)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    baseline = i2d["images_per_s"]
    best_i2d = max(baseline, i2d_sharded["images_per_s"] if i2d_sharded else 0)
    ratio = e2e["images_per_s"] / best_i2d if e2e else None
    result = {
        "benchmark": "download",
        "urls": args.n,
        "image_size": 256,
        "resize_mode": "border",
        "threads": args.threads,
        "cpus": args.cpus,
        "rows_per_unit": args.rows_per_unit,
        "baseline_img2dataset": i2d,
        "baseline_img2dataset_2_shards": i2d_sharded,
        "curate_ray_init_s": curate["ray_init_s"],
        "curate_pipeline_cold": curate["cold"],
        "curate_pipeline_warm": curate["warm"],
        "curate_run_subprocess_end_to_end": e2e,
        "ratio_end_to_end_vs_best_img2dataset": round(ratio, 2) if ratio else None,
        "ratio_end_to_end_vs_img2dataset": round(e2e["images_per_s"] / baseline, 2) if e2e else None,
        "ratio_pipeline_cold_vs_best_img2dataset": round(curate["cold"]["images_per_s"] / best_i2d, 2),
        "ratio_pipeline_warm_vs_best_img2dataset": round(curate["warm"]["images_per_s"] / best_i2d, 2),
        "target": "ratio_end_to_end_vs_best_img2dataset >= 1.5",
        "target_met": bool(ratio and ratio >= 1.5),
        "all_downloaded": all(r and r["successes"] >= 0.99 * args.n for r in (i2d, curate["cold"], curate["warm"], e2e) if r),
        "machine": env,
    }
    C.emit(result)


if __name__ == "__main__":
    main()
