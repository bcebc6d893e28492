"""Where embedded Ray's start-up goes: curate's embedded Ray vs a plain ``ray.init`` (the old one).

Each sample is a fresh interpreter (``--child MODE``) that times, in order: ``import ray``,
starting Ray, the first task (a worker process is spawned and imports Ray), ``import ray.data``,
a first tiny Ray Data plan (``range(8).map_batches(...).take_all()``: plan start, the
streaming executor's helper actors), the same plan again (warm), and ``ray.shutdown()``.

* ``embedded``: ``curate.engine.ray_runtime.EmbeddedRay`` (loopback only, no API-server
  process, worker output kept off the terminal).
* ``plain`` (the baseline): ``ray.init(include_dashboard=False, log_to_driver=True)``, what
  ``curate run`` did before. That Ray sends cloud-metadata requests off the machine, so every
  sample of both modes runs in a fresh network namespace with only loopback up
  (``unshare -n``, needs root); where that is not permitted the baseline is skipped.

Also ``curate run`` end to end (a command, Ray start-up included) over a 40-row synthetic
corpus served on loopback (``input.synth``, 2 units, ``download``), current code only.

Modes alternate (plain, embedded, plain, ...) so that load on the shared machine hits both
alike; figures are medians over ``--repeats``.

    .venv/bin/python benchmarks/startup.py [--repeats 3] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PHASES = ["import_ray", "start_ray", "first_task", "import_ray_data", "first_dataset", "second_dataset", "shutdown"]
NETNS = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "netns"]


def _child(mode: str, cpus: int) -> None:
    """One sample: print the phase times of this fresh interpreter as JSON."""
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = now - clock
        clock = now

    import ray

    lap("import_ray")
    if mode == "embedded":
        from curate.engine.ray_runtime import EmbeddedRay

        embedded = EmbeddedRay(num_cpus=cpus)
        embedded.start()
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    lap("start_ray")
    ray.get(ray.remote(lambda: 1).remote())
    lap("first_task")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    lap("import_ray_data")
    for name in ("first_dataset", "second_dataset"):
        ray.data.range(8, override_num_blocks=2).map_batches(lambda b: b).take_all()
        lap(name)
    if mode == "embedded":
        embedded.stop(failed=False)
    else:
        ray.shutdown()
    lap("shutdown")
    print(json.dumps(times))


def _sample(mode: str, cpus: int, wrap: list[str]) -> dict[str, float] | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    cmd = [*wrap, C.PYTHON, __file__, "--child", mode, "--cpus", str(cpus)]
    out = subprocess.run(cmd, env=env, cwd=C.REPO, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:  # e.g. Ray's "node timed out during startup" on an overloaded machine
        C.log(f"{mode} sample failed ({out.returncode}): {out.stderr[-1500:]}")
        return None
    times = json.loads(out.stdout.strip().splitlines()[-1])
    times["total"] = sum(times.values())
    return times


def _curate_run(cpus: int, wrap: list[str]) -> float | None:
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    try:
        spec = {
            "name": "startup",
            "input": {"path": str(work / "synth" / "samples.parquet"), "serve": str(work / "synth"),
                      "synth": {"n": 40, "seed": 3}, "rows_per_unit": 20},
            "stages": [{"stage": "download", "timeout": 5, "threads": 8}],
            "output": {"path": str(work / "out"), "image_size": 64},
            "resources": {"cpus": cpus},
        }
        (work / "spec.yaml").write_text(json.dumps(spec))
        # The corpus is written once before the timed run (input.synth makes it if missing).
        subprocess.run([C.PYTHON, "-m", "curate.cli", "sample", "synth", "--out", str(work / "synth"), "--n", "40",
                        "--seed", "3"], check=True, capture_output=True, cwd=C.REPO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        seconds, done = C.timed_run([*wrap, C.CURATE, "run", str(work / "spec.yaml")], env=env, cwd=C.REPO)
        if done.returncode != 0:
            C.log(f"curate run failed ({done.returncode}); its output is above")
            return None
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _netns_permitted() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip missing"
    probe = subprocess.run([*NETNS, "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n not permitted: {probe.stderr.strip()[:200]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--child", choices=["embedded", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.cpus)
        return
    C.claim_stdout()
    result: dict = {"benchmark": "startup", "machine": C.machine(), "repeats": args.repeats, "cpus": args.cpus}
    skipped = _netns_permitted()
    wrap = [] if skipped else NETNS
    modes = ["embedded"] if skipped else ["plain", "embedded"]
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for i in range(args.repeats):
        for mode in modes:
            C.log(f"sample {i + 1}/{args.repeats}: {mode}")
            samples[mode].append(_sample(mode, args.cpus, wrap))
    for mode, runs in samples.items():
        ok = [r for r in runs if r is not None]
        phases = [*PHASES, "total"] if ok else []
        result[mode] = {phase: C.round_sig(statistics.median(r[phase] for r in ok), 3) for phase in phases}
        result[mode]["failed_samples"] = len(runs) - len(ok)
    if skipped:
        result["plain"] = {"skipped": skipped}
    elif "total" in result["plain"] and "total" in result["embedded"]:
        result["ratio_total_plain_over_embedded"] = C.round_sig(result["plain"]["total"] / result["embedded"]["total"], 3)
    C.log("curate run end to end")
    runs = [_curate_run(args.cpus, wrap) for _ in range(args.repeats)]
    ok = [r for r in runs if r is not None]
    result["curate_run_40_urls"] = {"median_s": C.round_sig(statistics.median(ok), 3) if ok else None,
                                    "failed_runs": len(runs) - len(ok)}
    C.emit(result)


if __name__ == "__main__":
    main()
