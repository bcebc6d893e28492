"""The fetcher's byte budget: never more than ``buffer_bytes`` held (one body may exceed it
alone), nothing leaked when a batch ends or its consumer stops early."""

from __future__ import annotations

import time

import pytest

from curate.net.fetch import Fetcher, FetchSettings
from curate.net.policy import NetPolicy

MB = 1_000_000


@pytest.fixture
def fetcher():
    result = Fetcher(FetchSettings(timeout=20, threads=16, buffer_bytes=3 * MB), NetPolicy.build(["http"], ["127.0.0.0/8"], None))
    yield result
    result.close()


def _settled(fetcher: Fetcher) -> int:
    """``held_bytes`` once the releases sent to the event loop have run."""
    for _ in range(100):
        if fetcher.held_bytes == 0:
            break
        time.sleep(0.01)
    return fetcher.held_bytes


def test_held_bytes_stay_within_the_budget(http_server, fetcher) -> None:
    urls = [http_server.url(f"/big?mb=1&i={i}") for i in range(20)]
    held = []
    for _, fetched in fetcher.fetch(urls):
        assert len(fetched.body) == MB
        time.sleep(0.02)  # a slow consumer: the fetcher must wait for it, not buffer ahead
        held.append(fetcher.held_bytes)
    assert max(held) <= 3 * MB
    assert _settled(fetcher) == 0


def test_a_consumer_that_stops_early_leaks_nothing(http_server, fetcher) -> None:
    results = fetcher.fetch([http_server.url(f"/big?mb=1&length=no&j={i}") for i in range(20)] + [http_server.url("/silent")])
    next(results)
    results.close()  # e.g. the decoder raised: in-flight requests are cancelled, buffered bodies released
    assert _settled(fetcher) == 0
    # and the fetcher still works
    assert [f.body is not None for _, f in fetcher.fetch([http_server.url("/good/after.jpg")])] == [True]


def test_one_body_larger_than_the_budget_still_passes(http_server, fetcher) -> None:
    ((_, fetched),) = list(fetcher.fetch([http_server.url("/big?mb=5")]))
    assert len(fetched.body) == 5 * MB
    assert _settled(fetcher) == 0
