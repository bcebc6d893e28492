"""``uids.npy`` without every uid on the driver: an external merge sort of the shards' uids.

DataComp's ``--uids`` layout is one sorted ``np.dtype("u8,u8")`` array (high, low 64 bits).
The shards' parquets are read one at a time into sorted runs of at most ``run_rows`` uids, each
spilled to a local temporary ``.npy``; the runs are then merged through windows of
``memory_bytes`` in all, and the output is streamed: its header first (the count is known from
the parquets' metadata), then sorted batches. Peak memory is about one run plus the windows,
whatever the number of uids (a whole concatenation was 16 bytes a uid plus the parts).
"""

from __future__ import annotations

import tempfile

import numpy as np
import pyarrow.parquet as pq

from curate import storage
from curate.schema import uids_to_pairs

PAIR = np.dtype("u8,u8")


def write_sorted_uids(parquets: list[str], out_uri: str, total: int, run_rows: int = 4_000_000,
                      memory_bytes: int = 64 << 20) -> None:
    """Write the sorted uids of ``parquets`` (URIs, ``uid`` column) to ``out_uri`` as ``.npy``;
    ``total`` must be their row count (checked)."""
    with tempfile.TemporaryDirectory(prefix="curate-uids-") as spill:
        runs = _sorted_runs(parquets, spill, run_rows)
        with storage.open_output(out_uri) as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(PAIR),
                                                       "fortran_order": False, "shape": (total,)})
            written = 0
            for batch in _merge(runs, memory_bytes):
                out.write(batch.tobytes())
                written += len(batch)
            if written != total:
                raise RuntimeError(f"uids.npy: the shard parquets hold {written} uids, their metadata says {total}")


def _sorted_runs(parquets: list[str], spill: str, run_rows: int) -> list[np.ndarray]:
    """Sorted runs as read-only memory maps of local spill files."""
    runs, pending, held = [], [], 0

    def flush() -> None:
        nonlocal pending, held
        if not pending:
            return
        run = np.concatenate(pending)
        run.sort(order=["f0", "f1"])
        path = f"{spill}/{len(runs):06d}.npy"
        np.save(path, run)
        runs.append(np.load(path, mmap_mode="r"))
        pending, held = [], 0

    for uri in parquets:
        fs, path = storage.filesystem_of(uri)
        pairs = uids_to_pairs(pq.read_table(path, columns=["uid"], filesystem=fs).column("uid"))
        if held + len(pairs) > run_rows:
            flush()
        pending.append(pairs)
        held += len(pairs)
    flush()
    return runs


def _merge(runs: list[np.ndarray], memory_bytes: int):
    """Yield sorted batches of the k-way merge of sorted ``runs``.

    Each round takes a window from every run, finds the smallest of the windows' last uids (the
    bound: no later uid of any run is below it), emits every windowed uid up to the bound sorted
    together, and advances; the run that set the bound empties its window, so each round
    progresses."""
    window = max(1024, memory_bytes // (PAIR.itemsize * 2 * max(1, len(runs))))
    positions = [0] * len(runs)
    while True:
        live = [i for i, run in enumerate(runs) if positions[i] < len(run)]
        if not live:
            return
        windows = {i: runs[i][positions[i]:positions[i] + window] for i in live}
        bound = min((w[-1]["f0"], w[-1]["f1"]) for w in windows.values())
        taken = []
        for i, chunk in windows.items():
            high, low = chunk["f0"], chunk["f1"]
            upto = int(np.count_nonzero((high < bound[0]) | ((high == bound[0]) & (low <= bound[1]))))
            taken.append(chunk[:upto])
            positions[i] += upto
        batch = np.concatenate(taken)
        batch.sort(order=["f0", "f1"])
        yield batch
