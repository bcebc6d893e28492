"""Metrics overhead (issue 9, Benchmarks): the quickstart with metrics on vs off, in one process.

Each round runs the recipe twice, once per mode, each in a fresh embedded Ray started the way
``curate run`` starts it (``ray_session`` with the recipe's ``metrics``): on, the dashboard agent
runs the metrics agent and its Prometheus export, and every batch records curate's counters and
histograms; off, the agents run minimal and no metric object exists. The order alternates
(off, on, on, off, ...) so that the shared machine's load and warm caches hit both modes alike.

Per mode: the median over rounds of the run's throughput (input rows / seconds of
``run_pipeline``, Ray already up) and of Ray's start-up. ``ratio`` is metrics-on throughput over
metrics-off (target >= 0.97); ``ratio_with_startup`` charges each mode its Ray start too.

    .venv/bin/python benchmarks/metrics_overhead.py [--rounds 3] [--recipe pipelines/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def one_run(recipe: Path, out: Path, metrics_on: bool) -> dict:
    from rich.console import Console

    from curate.config import MetricsSpec, parse_spec
    from curate.engine.ray_runtime import ray_session
    from curate.pipeline import run_pipeline

    overrides = [f"metrics.enabled={'true' if metrics_on else 'false'}"]
    spec = parse_spec(recipe, overrides)
    started = time.perf_counter()
    with ray_session(None, spec.resources, MetricsSpec(enabled=metrics_on)):
        ray_up = time.perf_counter()
        result = run_pipeline(recipe, output=str(out), overwrite=True, overrides=overrides,
                              console=Console(stderr=True, quiet=True))
        done = time.perf_counter()
    return {"rows": result.funnel.rows, "kept": result.funnel.kept, "start_s": ray_up - started, "run_s": done - ray_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipe", type=Path, default=C.REPO / "pipelines" / "quickstart.yaml")
    args = parser.parse_args()
    C.claim_stdout()
    os.chdir(C.REPO)  # the recipe's paths (data/synth) are relative to the repository
    scratch = Path(tempfile.mkdtemp(prefix="metrics-overhead-"))
    samples: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        for index in range(args.rounds):
            order = ["off", "on"] if index % 2 == 0 else ["on", "off"]
            for mode in order:
                sample = one_run(args.recipe, scratch / mode, mode == "on")
                C.log(f"round {index + 1} metrics {mode}: {sample}")
                samples[mode].append(sample)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def summary(mode: str) -> dict:
        runs = samples[mode]
        run_s = statistics.median(s["run_s"] for s in runs)
        start_s = statistics.median(s["start_s"] for s in runs)
        rows = runs[0]["rows"]
        return {"rows": rows, "kept": runs[0]["kept"], "run_s": round(run_s, 2), "start_s": round(start_s, 2),
                "rows_per_s": round(rows / run_s, 2), "rows_per_s_with_startup": round(rows / (run_s + start_s), 2),
                "run_s_each": [round(s["run_s"], 2) for s in runs], "start_s_each": [round(s["start_s"], 2) for s in runs]}

    on, off = summary("on"), summary("off")
    assert on["kept"] == off["kept"], "metrics changed the result"
    C.emit({"benchmark": "metrics_overhead", "recipe": str(args.recipe.relative_to(C.REPO)), "rounds": args.rounds,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "metrics_on": on, "metrics_off": off,
            "ratio": round(on["rows_per_s"] / off["rows_per_s"], 3),
            "ratio_with_startup": round(on["rows_per_s_with_startup"] / off["rows_per_s_with_startup"], 3),
            "target": 0.97})


if __name__ == "__main__":
    main()
