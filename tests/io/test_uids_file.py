"""uids.npy by external merge sort: equal to sorting everything at once, whatever the run size
and window, and streamed with its header first."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io.uids_file import write_sorted_uids
from curate.schema import uids_to_datacomp


@pytest.mark.parametrize(("run_rows", "memory_bytes"), [(4_000_000, 64 << 20), (50, 1), (7, 1)])
def test_merge_equals_one_sort(tmp_path, run_rows, memory_bytes) -> None:
    rng = np.random.default_rng(6)
    parquets, everything = [], []
    for shard in range(9):
        uids = [f"{int(x):016x}{int(y):016x}" for x, y in rng.integers(0, 2**63, size=(int(rng.integers(0, 400)), 2))]
        uids += [f"{shard:016x}{0:016x}"]  # equal high halves across shards: the low half decides
        path = tmp_path / f"{shard:05d}.parquet"
        pq.write_table(pa.table({"uid": pa.array(uids, pa.string())}), path)
        parquets.append(str(path))
        everything += uids
    write_sorted_uids(parquets, str(tmp_path / "uids.npy"), len(everything), run_rows, memory_bytes)
    assert np.array_equal(np.load(tmp_path / "uids.npy"), uids_to_datacomp(everything))


def test_no_uids_and_a_wrong_count(tmp_path) -> None:
    write_sorted_uids([], str(tmp_path / "uids.npy"), 0)
    assert np.load(tmp_path / "uids.npy").shape == (0,)
    pq.write_table(pa.table({"uid": ["0" * 32]}), tmp_path / "a.parquet")
    with pytest.raises(RuntimeError, match="the shard parquets hold 1 uids, their metadata says 2"):
        write_sorted_uids([str(tmp_path / "a.parquet")], str(tmp_path / "bad.npy"), 2)
    assert not (tmp_path / "bad.npy").exists()
