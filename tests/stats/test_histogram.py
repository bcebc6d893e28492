"""Fixed-bin score histograms: every value inside its bin's edges, exact merges, nothing non-finite."""

import numpy as np
import pyarrow as pa

from curate.stats.histogram import bin_edges, bin_keys, merge, summarise


def test_every_value_lies_in_its_bin_and_bins_are_ordered():
    values = np.array([-1000.5, -3.0, -0.3, -1e-6, 0.0, 1e-6, 0.2799, 0.28, 0.3, 1.0, 7.5, 256.0, 1e9])
    keys = bin_keys(values)
    low, high = bin_edges(keys)
    as32 = values.astype(np.float32).astype(np.float64)
    assert np.all((low <= as32) & (as32 < high))
    assert np.all(np.diff(keys) >= 0)  # the keys sort as the values do


def test_bins_are_a_64th_of_an_octave():
    low, high = bin_edges(bin_keys(np.array([0.3, 1.0, 64.0])))
    assert np.allclose(high - low, [0.25 / 64, 1 / 64, 1.0])
    assert (low[1], high[1]) == (1.0, 1.015625)


def test_summarise_counts_finite_numbers_of_numeric_columns_only():
    table = pa.table({"score": pa.array([0.3, 0.3, None, float("nan"), 1.0], pa.float32()),
                      "width": pa.array([64, 64, 64, 65, 1000], pa.int32()),
                      "lang": ["en"] * 5, "empty": pa.array([None] * 5, pa.float64())})
    result = summarise(table, ["score", "width", "lang", "empty", "absent"])
    assert set(result) == {"score", "width"}
    assert result["score"]["counts"] == [2, 1]
    assert result["width"] == {"keys": bin_keys(np.array([64, 65, 1000])).tolist(), "counts": [3, 1, 1]}


def test_merging_units_equals_the_histogram_of_all_rows():
    rng = np.random.default_rng(0)
    values = rng.normal(0.3, 0.05, 1000)
    whole = summarise(pa.table({"s": values}), ["s"])["s"]
    units = [summarise(pa.table({"s": values[i:i + 137]}), ["s"]) for i in range(0, 1000, 137)]
    keys, counts = merge(units)["s"]
    assert keys.tolist() == whole["keys"] and counts.tolist() == whole["counts"] and counts.sum() == 1000
