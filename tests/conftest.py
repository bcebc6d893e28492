"""Shared fixtures: one local Ray instance per test session (as NeMo Curator's suite does),
and paths to ../shared for the tests marked ``shared_data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def ray_session():
    """A 2-CPU embedded Ray shared by every test that runs a pipeline in-process."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 * 1024, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"needs {path} (real third-party data; see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus (300 rows) shared by the end-to-end tests."""
    from curate.sample.synth import write_synth_corpus

    root = tmp_path_factory.mktemp("synth")
    write_synth_corpus(root, 300, seed=7)
    return root


@pytest.fixture(scope="session")
def http_server():
    """The loopback image server of :mod:`http_fixtures` (one per session; ``.reset()`` its counters)."""
    from http_fixtures import http_server as start

    with start() as server:
        yield server
