"""uids: 32 hex chars, one per input row, and DataComp's sorted u8,u8 layout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.schema import compute_uids, uids_to_datacomp, uids_to_pairs


def test_uids_are_per_row_and_stable() -> None:
    urls = pa.array(["http://A.com/x", "http://a.com/x#frag", "http://a.com/x"])
    captions = pa.array(["cat", "cat", "cat"])
    uids = compute_uids(urls, captions, "in.parquet", 10).to_pylist()
    assert all(len(u) == 32 and int(u, 16) >= 0 for u in uids)
    assert len(set(uids)) == 3  # identical (url, caption) rows still get their own uid
    assert uids == compute_uids(urls, captions, "in.parquet", 10).to_pylist()  # stable
    assert compute_uids(urls, captions, "in.parquet", 11).to_pylist()[:2] == uids[1:]  # the row index is hashed


def test_datacomp_layout_matches_python_int_parsing() -> None:
    uids = ["ffffffffffffffff0000000000000001", "00000000000000010000000000000000", "0123456789ABCDEF0123456789abcdef"]
    expected = np.array([(int(u[:16], 16), int(u[16:], 16)) for u in uids], np.dtype("u8,u8"))
    assert np.array_equal(uids_to_pairs(uids), expected)
    assert np.array_equal(uids_to_pairs(pa.chunked_array([uids[:1], uids[1:]])), expected)
    assert np.array_equal(uids_to_pairs(pa.array(uids).slice(1)), expected[1:])
    ordered = uids_to_datacomp(uids)
    assert ordered.dtype == np.dtype("u8,u8")
    assert [tuple(x) for x in ordered] == sorted(tuple(x) for x in expected)
