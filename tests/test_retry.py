"""``--retry-failed``: only transient download failures are re-attempted, and the run stays
conserved (every uid kept or in exactly one ledger row)."""

from __future__ import annotations

import io
import pickle
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from run_observations import histograms_of_rows, recorded_histograms

from curate.engine.retry import RetryRows, count_retryable, retryable_reasons
from curate.pipeline import run_pipeline
from curate.schema import uids_to_datacomp
from curate.stages.base import Decision, Filter, StageParams
from curate.stages.download import TRANSIENT_REASONS, DownloadParams, DownloadStage


def _jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    healthy = False  # while False, /flaky/* answers 503
    hits: Counter


class _Handler(BaseHTTPRequestHandler):
    image = _jpeg()

    def do_GET(self):  # noqa: N802
        self.server.hits[self.path] += 1
        if self.path.startswith("/missing/"):
            self.send_error(404)
        elif self.path.startswith("/flaky/") and not self.server.healthy:
            self.send_error(503)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.image)))
            self.end_headers()
            self.wfile.write(self.image)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = Counter()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _ledger(run) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))])


def test_retry_failed_reattempts_only_transient_failures(tmp_path, flaky_server, ray_session):
    base = f"http://127.0.0.1:{flaky_server.server_address[1]}"
    urls = [f"{base}/ok/{i}.jpg" for i in range(6)] + [f"{base}/flaky/{i}.jpg" for i in range(5)]
    urls += [f"{base}/missing/{i}.jpg" for i in range(3)]
    captions = [f"a photo of thing number {i}" for i in range(len(urls))]
    pq.write_table(pa.table({"url": urls, "caption": captions}), tmp_path / "in.parquet")
    spec = {
        "name": "retry",
        "input": {"path": str(tmp_path / "in.parquet"), "rows_per_unit": 4},
        "stages": [{"stage": "caption_rules", "min_chars": 1},
                   {"stage": "download", "timeout": 5, "threads": 4, "allow_private": ["127.0.0.0/8"]}],
        "output": {"image_size": 32, "samples_per_shard": 3},
    }
    run = tmp_path / "run"

    first = run_pipeline(spec, output=str(run))
    assert first.funnel.kept == 6
    assert dict(first.funnel.stages[2].dropped) == {"http_503": 5, "http_404": 3}

    # The scan keeps a count per unit; a retry read task finds its unit's rows from its ledgers.
    # Before: the driver held every retried row in a dict, pickled into every read task.
    reasons = {"download": TRANSIENT_REASONS}
    assert count_retryable(str(run), [0, 1, 2, 3], reasons) == [(0, 0), (1, 2), (2, 3), (3, 0)]
    rows = RetryRows(str(run), reasons)
    assert [rows[unit].tolist() for unit in range(4)] == [[], [6, 7], [8, 9, 10], []]
    assert len(pickle.dumps(rows)) < 300

    flaky_server.healthy = True
    (run / "stats" / "units" / "00000.json").unlink()  # as if unit 0 had not been committed yet
    hits_before = Counter(flaky_server.hits)
    second = run_pipeline(spec, output=str(run), retry_failed=True)
    # unit 0 is finished first (a resume), then rows 6-10 are retried: units 1 (rows 4-7) and 2 (rows 8-11)
    assert second.units_run == 3
    assert second.funnel.kept == 11
    assert dict(second.funnel.stages[2].dropped) == {"http_404": 3}
    # the retried rows' first caption_chars left with their ledger rows: each row is counted once
    histograms = recorded_histograms(run)
    assert histograms == histograms_of_rows(run, histograms) and sum(histograms["caption_chars"]["counts"]) == 14
    retried = {path: n - hits_before[path] for path, n in flaky_server.hits.items() if n != hits_before[path]}
    # only unit 0's rows and the flaky ones were fetched again
    assert retried == {f"/flaky/{i}.jpg": 1 for i in range(5)} | {f"/ok/{i}.jpg": 1 for i in range(4)}

    ledger = _ledger(run)
    assert sorted(ledger.column("reason").to_pylist()) == ["http_404"] * 3
    kept = []
    for path in sorted((run / "shards").glob("*.parquet")):
        kept += pq.read_table(path).column("uid").to_pylist()
    assert len(kept) == len(set(kept)) == 11
    assert not set(kept) & set(ledger.column("uid").to_pylist())
    assert np.array_equal(np.load(run / "uids.npy"), uids_to_datacomp(kept))

    third = run_pipeline(spec, output=str(run), retry_failed=True)
    assert third.units_run == 0 and third.funnel.kept == 11


class _Flaky(Filter):
    """A stage outside the engine's knowledge that declares its own retryable reasons."""

    kind = "flaky_for_test"
    retryable_reasons = r"^busy$"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, scored: pa.Table) -> Decision:
        raise NotImplementedError


def test_retryable_stages_are_the_ones_that_declare_reasons() -> None:
    """Before: retry imported DownloadStage and retried only its rows (issue 6 §5)."""
    stages = [DownloadStage(DownloadParams(), name="fetch"), _Flaky(StageParams())]
    assert retryable_reasons(stages) == {"fetch": TRANSIENT_REASONS, "flaky_for_test": r"^busy$"}
