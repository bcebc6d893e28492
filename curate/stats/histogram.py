"""Score histograms that merge exactly across units: every value falls in a fixed bin that does not
depend on the data, so per-unit counts add up to the whole run's (datatrove-style per-task stats,
merged by one function), and nothing proportional to the rows is kept.

A bin is 1/64 of a power of two: the top 15 bits of the float32's order-preserving bit pattern (the
top_fraction stage uses the same order at 2^13 bins per octave). That is 0.0039 wide around a CLIP
score of 0.3 and exact for integers up to 64; a unit's histogram of one score spread over
[1e-3, 1] has at most 640 bins.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SHIFT = 17  # float32 keeps 23 mantissa bits; 6 remain: 64 bins per power of two
_SIGN = np.uint32(0x80000000)


def _ordered(values: np.ndarray) -> np.ndarray:
    """float32 values as uint32 that sort as the floats do (negatives flipped, positives offset)."""
    bits = values.astype(np.float32).view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def bin_keys(values: np.ndarray) -> np.ndarray:
    """The bin of each value (finite values only)."""
    return (_ordered(values) >> _SHIFT).astype(np.int64)


def bin_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each bin as float64: every value of bin ``k`` lies in [low, high)."""
    keys = np.asarray(keys, dtype=np.int64)
    return _unordered(keys << _SHIFT), _unordered((keys + 1) << _SHIFT)  # the order is monotone both sides of 0


def _unordered(patterns: np.ndarray) -> np.ndarray:
    patterns = np.clip(patterns, 0, 0xFFFFFFFF).astype(np.uint64).astype(np.uint32)
    bits = np.where(patterns & _SIGN, patterns & ~_SIGN, ~patterns)
    return bits.view(np.float32).astype(np.float64)


def is_score_type(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


def summarise(table: pa.Table, columns: Iterable[str]) -> dict[str, dict[str, list[int]]]:
    """``{column: {"keys": [...], "counts": [...]}}`` over the finite values of each numeric column
    of ``columns`` that ``table`` has (nulls and NaN are not counted); columns with no value are left out."""
    result = {}
    for name in columns:
        if name not in table.column_names or not is_score_type(table.schema.field(name).type):
            continue
        values = pc.drop_null(table.column(name)).to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        keys, counts = np.unique(bin_keys(values), return_counts=True)
        result[name] = {"keys": keys.tolist(), "counts": counts.tolist()}
    return result


def merge(histograms: Iterable[dict[str, dict[str, list[int]]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per column, the summed (keys, counts) of many units' histograms, keys ascending."""
    parts: dict[str, list[tuple[list[int], list[int]]]] = {}
    for histogram in histograms:
        for name, bins in histogram.items():
            parts.setdefault(name, []).append((bins["keys"], bins["counts"]))
    merged = {}
    for name, pieces in parts.items():
        keys = np.concatenate([np.asarray(k, dtype=np.int64) for k, _ in pieces])
        counts = np.concatenate([np.asarray(c, dtype=np.int64) for _, c in pieces])
        unique, inverse = np.unique(keys, return_inverse=True)
        merged[name] = (unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64))
    return merged


def negated(histograms: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, list[int]]]:
    """The same bins with negative counts: merged in, they take rows out (``--retry-failed``)."""
    return {name: {"keys": bins["keys"], "counts": [-n for n in bins["counts"]]} for name, bins in histograms.items()}


def as_json(merged: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, list[int]]]:
    """Merged histograms in the per-unit form :func:`summarise` gives (empty bins left out)."""
    result = {}
    for name, (keys, counts) in merged.items():
        if (counts < 0).any():
            raise RuntimeError(f"histogram of {name}: negative counts after a merge")
        present = counts > 0
        if present.any():
            result[name] = {"keys": keys[present].tolist(), "counts": counts[present].tolist()}
    return result
