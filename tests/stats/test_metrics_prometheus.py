"""curate's metrics and the Grafana dashboard against a real Prometheus (Debian's ``prometheus``)
scraping the embedded Ray's export during a real run (issue 9 §3).

A driver process runs a small pipeline (caption filters, language ID in an actor pool, a URL
dedup whose observe pass replays the stages before it, a loopback download with 404s, an image
filter) inside its own embedded Ray with metrics on, then keeps that Ray, and so its metrics
export, alive until the test has queried Prometheus: Ray's exporter goes away with the Ray.
Prometheus finds the export through the service-discovery file the embedded Ray writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "curate.json"
LAST_STAGE = "datacomp_image"
MISSING = ["images/missing-1.jpg", "images/missing-2.jpg"]  # 404s from input.serve
#: Grafana's variables, as the dashboard would expand them on this run.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$session": ".*"}
#: Ray's per-GPU gauges: a machine without a GPU has none of them.
GPU_METRICS = ("ray_node_gpus_utilization", "ray_node_gram_used")
SETTLE_S = 120  # the last batch's counters reach Prometheus within report interval (1 s here) + scrape (1 s)

DRIVER = """
import json, sys
from curate.config import MetricsSpec, ResourcesSpec
from curate.engine.ray_runtime import ray_session
from curate.pipeline import run_pipeline

spec, out = json.loads(sys.argv[1]), sys.argv[2]
with ray_session(None, ResourcesSpec(cpus=2), MetricsSpec()):
    result = run_pipeline(spec, output=out)
    print(json.dumps(result.funnel.to_json()), flush=True)
    sys.stdin.readline()  # Ray, and its metrics export, live until the test is done querying
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """A Prometheus server on 127.0.0.1 scraping every second what the file_sd files name."""

    def __init__(self, binary: str, root: Path, discovery_glob: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.time()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "ray", "file_sd_configs": [{"files": [discovery_glob],
                                                                            "refresh_interval": "1s"}]}]}
        (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = root / "prometheus.log"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus not ready in 60 s:\n" + self.log.read_text()[-3000:]
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def query_range(self, expr: str) -> list[dict]:
        """``expr`` over every second since this server started, as a Grafana panel asks for it."""
        window = {"query": expr, "start": f"{self.started:.3f}", "end": f"{time.time():.3f}", "step": "1"}
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(window)}",
                                    timeout=30) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def by(self, expr: str, *labels: str) -> dict:
        """``{label values: value}`` of an instant vector (integers where whole)."""
        return {tuple(r["metric"].get(k, "") for k in labels): _number(r["value"][1]) for r in self.query(expr)}

    def targets(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as answer:
            return json.load(answer)["data"]["activeTargets"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def corpus(root: Path) -> dict:
    """The spec of the run: 120 synthetic samples plus two URLs the server does not have."""
    from curate.sample.synth import write_synth_corpus

    serve = root / "corpus"
    write_synth_corpus(serve, 120, seed=3)
    table = pq.read_table(serve / "samples.parquet", columns=["url", "caption"])
    extra = pa.table({"url": MISSING, "caption": ["a photo of a missing red circle", "a photo of a missing blue square"]})
    pq.write_table(pa.concat_tables([table, extra]), root / "in.parquet")
    return {"name": "metrics", "input": {"path": str(root / "in.parquet"), "serve": str(serve), "rows_per_unit": 40},
            "stages": [{"stage": "laion_caption"}, {"stage": "datacomp_caption"},
                       {"stage": "language_id", "languages": ["en"]}, {"stage": "url_dedup"},
                       # small batches, few threads: the download's counters change over several
                       # seconds. Ray exports a series only in the scrape after it changed, and a
                       # rate needs two samples: one 40-row batch per unit gave a single sample.
                       {"stage": "download", "timeout": 10, "threads": 2, "resources": {"batch_size": 4}},
                       {"stage": LAST_STAGE}],
            "output": {"samples_per_shard": 50, "image_size": 64}}


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression as Grafana would send it) for every target of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


@pytest.fixture(scope="module")
def scraped_run():
    """The run, Prometheus scraping it, and its funnel; Ray stays up until the module's tests end."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    from curate.engine.ray_runtime import DISCOVERY_PREFIX, sessions_root

    tmp = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # short: Ray's socket paths live under it
    root = sessions_root(str(tmp))
    root.mkdir(mode=0o700, parents=True)
    prometheus = Prometheus(binary, tmp, str(root / f"{DISCOVERY_PREFIX}*.json"))
    driver = None
    try:
        spec = corpus(tmp)
        env = dict(os.environ, RAY_TMPDIR=str(tmp), RAY_metrics_report_interval_ms="1000", PYTHONUNBUFFERED="1")
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec), str(tmp / "run")], cwd=REPO, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(tmp / "driver.log").open("wb"),
                                  text=True)
        line = driver.stdout.readline()
        assert line, "the run failed:\n" + (tmp / "driver.log").read_text()[-5000:]
        funnel = json.loads(line)
        yield prometheus, funnel, root, driver
    finally:
        if driver is not None:
            driver.stdin.close()
            try:
                driver.wait(timeout=60)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
        prometheus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


#: Totals the settled counters reach: (query, the funnel's figure).
SETTLED = [
    (f'sum(ray_curate_rows_kept_total{{stage="{LAST_STAGE}"}})', lambda f: f["kept"]),
    ('sum(ray_curate_units_committed_total{phase="shards"})', lambda f: f["units"]),
    ('sum(ray_curate_rows_in_total{stage!="read"})', lambda f: sum(s["in"] for s in f["stages"] if s["stage"] != "read")),
    ("sum(ray_curate_rows_dropped_total)", lambda f: sum(s["dropped"] for s in f["stages"])),
    ("sum(ray_curate_download_requests_total)", lambda f: next(s["in"] for s in f["stages"] if s["stage"] == "download")),
]


@pytest.fixture(scope="module")
def settled(scraped_run):
    """Prometheus once it holds the run's last counters. Each worker pushes its own every second
    here (RAY_metrics_report_interval_ms), so the download's last batch may land after the last
    stage's: wait for every total, then compare the details."""
    prometheus, funnel, _, _ = scraped_run
    wanted = [figure(funnel) for _, figure in SETTLED]
    deadline = time.monotonic() + SETTLE_S
    while True:
        totals = [prometheus.by(query).get((), None) for query, _ in SETTLED]
        if totals == wanted or time.monotonic() > deadline:
            return prometheus, funnel
        time.sleep(1)


def test_prometheus_scrapes_the_embedded_ray_on_loopback_through_its_discovery_file(scraped_run) -> None:
    """Before: the embedded Ray ran its agents minimal: no metrics agent, no export, no discovery
    file. Now the export listens on 127.0.0.1 only and the file names it."""
    prometheus, _, root, driver = scraped_run
    files = list(root.glob("prom_metrics_*.json"))
    assert len(files) == 1, files
    [group] = json.loads(files[0].read_text())
    [target] = group["targets"]
    host, port = target.rsplit(":", 1)
    assert (group["labels"], host) == ({"job": "ray"}, "127.0.0.1")
    listeners = [c.laddr for p in psutil.Process(driver.pid).children(recursive=True)
                 for c in _listening(p) if c.laddr.port == int(port)]
    assert [addr.ip for addr in listeners] == ["127.0.0.1"]
    deadline = time.monotonic() + 60
    while not [t for t in prometheus.targets() if t["health"] == "up"] and time.monotonic() < deadline:
        time.sleep(1)
    assert [(t["scrapeUrl"], t["health"]) for t in prometheus.targets()] == [(f"http://{target}/metrics", "up")]


def _listening(proc: psutil.Process) -> list:
    try:
        return [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


def test_rows_kept_and_dropped_by_reason_equal_the_funnel(settled) -> None:
    """The counters summed over workers are the run's funnel: kept after the last stage, rows in
    and kept per stage (the URL dedup's observe pass, which replays the stages before it, is not
    counted twice), and every stage's drops by reason."""
    prometheus, funnel = settled
    assert prometheus.by(f'sum(ray_curate_rows_kept_total{{stage="{LAST_STAGE}"}})') == {(): funnel["kept"]}
    stages = [s for s in funnel["stages"] if s["stage"] != "read"]
    rows_in = prometheus.by("sum by (stage) (ray_curate_rows_in_total)", "stage")
    kept = prometheus.by("sum by (stage) (ray_curate_rows_kept_total)", "stage")
    assert {s["stage"]: (rows_in.get((s["stage"],), 0), kept.get((s["stage"],), 0)) for s in stages} == \
           {s["stage"]: (s["in"], s["kept"]) for s in stages}
    dropped = prometheus.by("sum by (stage, reason) (ray_curate_rows_dropped_total)", "stage", "reason")
    assert dropped == {(s["stage"], reason): n for s in funnel["stages"] for reason, n in s["reasons"].items()}
    assert dropped[("download", "http_404")] >= len(MISSING)  # ours, and the corpus' own missing images


def test_download_bytes_and_http_statuses(settled) -> None:
    prometheus, funnel = settled
    statuses = prometheus.by("sum by (status) (ray_curate_download_requests_total)", "status")
    download = next(s for s in funnel["stages"] if s["stage"] == "download")
    assert statuses[("404",)] == download["reasons"]["http_404"] >= len(MISSING)
    assert sum(statuses.values()) == download["in"] and statuses[("200",)] >= download["kept"]
    [(_, body_bytes)] = prometheus.by("sum(ray_curate_download_bytes_total)").items()
    assert body_bytes > 1000 * statuses[("200",)]  # the synthetic images are 5-60 KB


def test_model_batch_time_of_the_actor_stage(settled) -> None:
    prometheus, _ = settled
    counts = prometheus.by("sum by (stage, device) (ray_curate_model_batch_seconds_count)", "stage", "device")
    assert list(counts) == [("language_id", "cpu")] and counts[("language_id", "cpu")] >= 1


def test_every_dashboard_expression_returns_a_series(settled) -> None:
    """Every target of dashboards/curate.json, as Grafana sends it (a range query over the run),
    answers with at least one series (Ray's per-GPU gauges only where a GPU is: see the next test).
    Ray exports a series only in the scrape after it changed, so a rate needs a counter that changed
    twice: with one download batch per unit the download panels were empty in CI (see corpus())."""
    prometheus, _ = settled
    empty = [(title, expr) for title, expr in dashboard_expressions()
             if not any(m in expr for m in GPU_METRICS) and not prometheus.query_range(expr)]
    assert empty == []


def test_gpu_panels_use_gauges_ray_declares(settled) -> None:
    """The GPU panels' metrics are the ones Ray's reporter agent exports on a node with GPUs (this
    machine has none to scrape: where it has, they must answer too)."""
    from ray.dashboard.modules.reporter.reporter_agent import METRICS_GAUGES

    prometheus, _ = settled
    gpu = [(title, expr) for title, expr in dashboard_expressions() if any(m in expr for m in GPU_METRICS)]
    used = {name for _, expr in gpu for name in re.findall(r"ray_(node_g\w+)", expr)}
    assert gpu and used <= set(METRICS_GAUGES), used - set(METRICS_GAUGES)
    if prometheus.by("sum(max_over_time(ray_node_gpus_available[1m]))"):  # Ray's gauges come and go
        assert [(title, expr) for title, expr in gpu if not prometheus.query_range(expr)] == []
