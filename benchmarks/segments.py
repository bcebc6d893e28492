"""A global stage after download on the synthetic corpus (issue 6 §2): ``image_exact_dedup``
reads a checkpoint instead of replaying the download. A run killed (SIGKILL of the driver's
process group) during segment 2 and rerun must equal a clean run, and the image server's
request counter must show no URL of segment 1 fetched twice.

    .venv/bin/python benchmarks/segments.py [--n 3000]

The images are served by a counting HTTP server in this process (URLs made absolute), so the
fetches of the killed run plus its rerun can be compared with a clean run's.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from _common import CURATE, claim_stdout, emit, log

ROWS_PER_UNIT = 250


class _Counting(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: Counter = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.hits[self.path] += 1
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002
        pass


def _corpus(root: Path, n: int, base: str) -> Path:
    from curate.sample.synth import write_synth_corpus

    write_synth_corpus(str(root), n, 0)
    table = pq.read_table(root / "samples.parquet")
    urls = pc.binary_join_element_wise(base, table.column("url"), "")
    pq.write_table(table.set_column(0, "url", urls), root / "absolute.parquet")
    return root / "absolute.parquet"


def _spec(path: Path) -> dict:
    return {"name": "segments", "input": {"path": str(path), "rows_per_unit": ROWS_PER_UNIT, "keep_columns": ["noise"]},
            "stages": [{"stage": "laion_caption"},
                       {"stage": "download", "timeout": 5, "threads": 32, "allow_private": ["127.0.0.0/8"]},
                       {"stage": "image_exact_dedup"},
                       {"stage": "laion_image"}],
            "output": {"samples_per_shard": 1000, "image_size": 224, "resize_mode": "center_crop"}}


def _curate(spec: Path, out: Path, **popen) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.Popen([CURATE, "run", str(spec), "--output", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **popen)


def _result(run: Path) -> tuple:
    ledger = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))])
    rows = sorted(zip(*(ledger.column(c).to_pylist() for c in ("uid", "stage", "reason", "detail")), strict=True))
    return np.load(run / "uids.npy").tobytes(), rows, json.loads((run / "stats" / "stats.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    claim_stdout()
    with tempfile.TemporaryDirectory(prefix="curate-segments-") as tmp:
        root = Path(tmp)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Counting, directory=str(root / "corpus")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump(_spec(_corpus(root / "corpus", args.n, f"http://127.0.0.1:{server.server_address[1]}/"))))
        units = -(-args.n // ROWS_PER_UNIT)

        start = time.perf_counter()
        clean = _curate(spec, root / "clean")
        assert clean.wait() == 0, clean.stderr.read()
        clean_s, clean_hits = time.perf_counter() - start, Counter(_Counting.hits)
        log(f"clean run: {clean_s:.1f} s, {sum(clean_hits.values())} fetches")

        _Counting.hits.clear()
        start = time.perf_counter()
        killed = _curate(spec, root / "killed", start_new_session=True)
        markers = root / "killed" / "checkpoints" / "01" / "_units"
        while killed.poll() is None and not (markers.is_dir() and len(list(markers.glob("*.json"))) == units):
            time.sleep(0.01)
        assert killed.poll() is None, "the run ended before segment 2 could be interrupted"
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        killed_at, hits_at_kill = time.perf_counter() - start, Counter(_Counting.hits)
        start = time.perf_counter()
        rerun = _curate(spec, root / "killed")
        assert rerun.wait() == 0, rerun.stderr.read()
        rerun_s = time.perf_counter() - start
        server.shutdown()
        emit({
            "rows": args.n, "units": units,
            "clean_run_s": round(clean_s, 1),
            "killed_after_s": round(killed_at, 1),
            "rerun_s": round(rerun_s, 1),
            "fetches_clean": sum(clean_hits.values()),
            "fetches_before_kill": sum(hits_at_kill.values()),
            "fetches_by_rerun": sum(_Counting.hits.values()) - sum(hits_at_kill.values()),
            "no_url_fetched_twice": _Counting.hits == clean_hits,
            "equal_to_clean_run": _result(root / "killed") == _result(root / "clean"),
            "image_exact_dedup": next(s for s in _result(root / "clean")[2]["stages"] if s["stage"] == "image_exact_dedup"),
        })


if __name__ == "__main__":
    main()
