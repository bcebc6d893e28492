"""Small synthetic pairs shared by the trainer tests (clean rows, squared to curate-tiny-clip's 48 px)."""

from __future__ import annotations

import pytest

from curate.train.filter_net import trusted_pairs
from curate.train.shards import write_pair_shards


@pytest.fixture(scope="session")
def clean_pairs(tmp_path_factory):
    """About 240 clean pairs of a 400-row synthetic corpus (seed 5)."""
    return trusted_pairs(tmp_path_factory.mktemp("synth") / "corpus", 400, 5, 48)


@pytest.fixture(scope="session")
def run_like(tmp_path_factory, clean_pairs):
    """A run-directory-shaped folder: shards/{00000..00002}.tar and shards/sizes.json (80 a shard),
    plus held-out shards of the last 40 pairs."""
    root = tmp_path_factory.mktemp("run")
    write_pair_shards(root / "run" / "shards", clean_pairs[:-40], 80)
    write_pair_shards(root / "heldout", clean_pairs[-40:], 1000)
    return root
