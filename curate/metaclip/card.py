"""The MetaCLIP data card of a run (``stats/metaclip.json``) and its summary for ``curate stats``.

It says what balancing did (Xu et al. 2023, §3.3 and Fig. 2): the ``t`` used, how much of the pool
matched an entry, and the entry-count distribution *before* balancing (the pool's counts, from the
stage's reduced state) and *in the shards* (counted over the kept shards' ``metaclip_entries``,
so after balancing and any later stage): head and tail entries with their names, quantiles over
matched entries, and how many entries reach ``t``. Head entries of the pool sit far above ``t``
and are cut to about ``t`` by balancing; tail entries are kept whole.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage

CARD = "metaclip"
QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
#: Entries listed at each end of the distribution.
HEAD = 20
#: Rows read at once from a shard's parquet: memory stays ~ entries, never ~ samples.
_READ_ROWS = 65_536


def entry_counts(state: pa.Table) -> tuple[np.ndarray, int, int]:
    """Per-entry counts (index = entry id) and the pool's (samples, matched samples) from the
    balance stage's state rows: ``entry`` >= 0 an entry, -1 all samples, -2 matched samples."""
    entry = state.column("entry").to_numpy().astype(np.int64)
    count = state.column("count").to_numpy().astype(np.int64)
    ids = entry >= 0
    counts = np.zeros(int(entry[ids].max()) + 1 if ids.any() else 0, np.int64)
    counts[entry[ids]] = count[ids]
    return counts, int(count[entry == -1].sum()), int(count[entry == -2].sum())


def shard_entry_counts(paths: list[str], column: str) -> tuple[np.ndarray, int]:
    """Entry counts over ``column`` of the shards' parquet files, streamed; and their rows."""
    counts = np.zeros(0, np.int64)
    rows = 0
    for path in paths:
        fs, local = storage.filesystem_of(path)
        with fs.open_input_file(local) as handle:
            file = pq.ParquetFile(handle)
            for batch in file.iter_batches(columns=[column], batch_size=_READ_ROWS):
                rows += batch.num_rows
                flat = pc.list_flatten(batch.column(0)).to_numpy(zero_copy_only=False).astype(np.int64)
                if flat.size:
                    found = np.bincount(flat)
                    if found.size > counts.size:
                        counts = np.pad(counts, (0, found.size - counts.size))
                    counts[:found.size] += found
    return counts, rows


def distribution(counts: np.ndarray, names: list[str] | None, t: int) -> dict:
    """Head and tail entries, quantiles over matched entries, entries reaching ``t``."""
    matched = np.flatnonzero(counts)
    by_count = matched[np.lexsort((matched, -counts[matched]))]  # count descending, then id

    def listed(ids: np.ndarray) -> list[dict]:
        return [{"id": int(i), "entry": names[i] if names is not None and i < len(names) else None,
                 "count": int(counts[i])} for i in ids]

    values = counts[matched]
    return {
        "entries_matched": int(matched.size),
        "entries_at_or_over_t": int((values >= t).sum()),
        "matches": int(values.sum()),
        "quantiles": {f"p{round(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES} if values.size else {},
        "head": listed(by_count[:HEAD]),
        "tail": listed(by_count[::-1][:HEAD]),
    }


def build_card(state: pa.Table, t: int, seed: int, names: list[str] | None, metadata: str | None,
               shard_parquets: list[str], column: str) -> dict:
    """The card's JSON (see the module docstring)."""
    before, samples, matched = entry_counts(state)
    after, kept = shard_entry_counts(shard_parquets, column)
    return {
        "card": CARD,
        "t": t,
        "seed": seed,
        "metadata": metadata,
        "entries_total": len(names) if names is not None else None,
        "pool": {"samples": samples, "matched": matched, "matched_fraction": matched / samples if samples else 0.0},
        "before": {"label": "in the pool (before balancing)", **distribution(before, names, t)},
        "after": {"label": "in the shards (after balancing and any later stage)", "samples": kept,
                  **distribution(after, names, t)},
    }


def render_card(card: dict) -> list[str]:
    """Lines for ``curate stats``."""
    pool = card["pool"]
    total = card["entries_total"]
    lines = [f"MetaCLIP balancing (t = {card['t']:,}, seed {card['seed']}): "
             f"{pool['matched']:,} of {pool['samples']:,} samples matched an entry ({pool['matched_fraction']:.1%})"
             + (f"; metadata of {total:,} entries" if total is not None else "")]
    for side in ("before", "after"):
        part = card[side]
        samples = f"{part['samples']:,} samples, " if "samples" in part else ""
        quantiles = ", ".join(f"{k} {v:,.0f}" for k, v in part["quantiles"].items())
        lines.append(f"  {part['label']}: {samples}{part['entries_matched']:,} entries matched, "
                     f"{part['entries_at_or_over_t']:,} at or over t; counts {quantiles or 'none'}")
        lines.append("    head: " + _entries(part["head"][:10]))
        lines.append("    tail: " + _entries(part["tail"][:10]))
    return lines


def _entries(listed: list[dict]) -> str:
    return ", ".join(f"{e['entry'] if e['entry'] is not None else '#' + str(e['id'])} ({e['count']:,})"
                     for e in listed) or "none"
