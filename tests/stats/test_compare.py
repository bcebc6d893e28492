"""``curate stats --compare RUN_A RUN_B``: the funnels side by side (stages matched by name), the
reasons that changed and the recipe changes, on two real caption-only runs of one input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.stats.compare import recipe_changes, union_order

CAPTIONS = ["a cat", "no", "a dog on a mat", "ok", "birds in the sky", "two red apples", "it is", "hello there"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_session) -> tuple[Path, Path]:
    """A: laion_caption (5 characters) then datacomp_caption (6 characters, 3 words); B:
    datacomp_caption at 2 words, then caption_rules (12 characters)."""
    from curate.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("compare")
    pq.write_table(pa.table({"url": [f"http://h/{i}" for i in range(len(CAPTIONS))], "caption": CAPTIONS}),
                   root / "in.parquet")
    base = {"input": {"path": str(root / "in.parquet"), "rows_per_unit": 4}}
    a = run_pipeline({**base, "name": "a", "stages": [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}]},
                     output=str(root / "a")).run_dir
    b = run_pipeline({**base, "name": "b", "stages": [{"stage": "datacomp_caption", "min_words": 2},
                                                      {"stage": "caption_rules", "min_chars": 12}],
                      "output": {"samples_per_shard": 3}}, output=str(root / "b")).run_dir
    return a, b


def stats(capsys, *argv) -> tuple[int, str, str]:
    code = main(["stats", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_json(capsys, runs: tuple[Path, Path]) -> None:
    a, b = runs
    code, out, _ = stats(capsys, "--compare", a, b, "--json")
    result = json.loads(out)
    assert code == 0
    assert (result["a"], result["b"]) == ({"run": str(a), "rows": 8, "kept": 3, "state": "complete"},
                                          {"run": str(b), "rows": 8, "kept": 3, "state": "complete"})
    # A: laion_caption drops "no", "ok"; datacomp_caption "a cat", "it is" (< 6 characters), "hello there" (2 words).
    # B: datacomp_caption drops "a cat", "no", "ok", "it is"; caption_rules "hello there" (11 characters).
    assert result["stages"] == [
        {"stage": "read", "a": {"in": 8, "kept": 8, "dropped": 0}, "b": {"in": 8, "kept": 8, "dropped": 0},
         "delta": {"in": 0, "kept": 0, "dropped": 0}},
        {"stage": "laion_caption", "a": {"in": 8, "kept": 6, "dropped": 2}, "b": None, "delta": None},
        {"stage": "datacomp_caption", "a": {"in": 6, "kept": 3, "dropped": 3}, "b": {"in": 8, "kept": 4, "dropped": 4},
         "delta": {"in": 2, "kept": 1, "dropped": 1}},
        {"stage": "caption_rules", "a": None, "b": {"in": 4, "kept": 3, "dropped": 1}, "delta": None},
    ]
    assert result["reasons"] == [
        {"stage": "laion_caption", "reason": "caption_too_short", "a": 2, "b": 0, "delta": -2},
        {"stage": "datacomp_caption", "reason": "caption_too_few_words", "a": 1, "b": 0, "delta": -1},
        {"stage": "datacomp_caption", "reason": "caption_too_short", "a": 2, "b": 4, "delta": 2},
        {"stage": "caption_rules", "reason": "caption_too_short", "a": 0, "b": 1, "delta": 1},
    ]
    assert result["recipe"] == [
        {"key": "name", "a": "a", "b": "b"},
        {"key": "output.samples_per_shard", "a": 10000, "b": 3},
        {"key": "stages.0.min_words", "a": 3, "b": 2},
        {"key": "stages.1", "b": "caption_rules"},
        {"key": "stages.0", "a": "laion_caption"},
    ]


def test_compare_text(capsys, runs: tuple[Path, Path]) -> None:
    a, b = runs
    code, out, _ = stats(capsys, "--compare", a, b)
    assert code == 0 and out.splitlines() == [
        f"A: {a} (3 of 8 kept)",
        f"B: {b} (3 of 8 kept)",
        "",
        "stage             in A -> B    kept A -> B  dropped A -> B",
        "read              8 -> 8       8 -> 8       0 -> 0",
        "laion_caption     8 -> -       6 -> -       2 -> -",
        "datacomp_caption  6 -> 8 (+2)  3 -> 4 (+1)  3 -> 4 (+1)",
        "caption_rules     - -> 4       - -> 3       - -> 1",
        "",
        "reasons that changed:",
        "  stage             reason                 A  B  delta",
        "  laion_caption     caption_too_short      2  0  -2",
        "  datacomp_caption  caption_too_few_words  1  0  -1",
        "  datacomp_caption  caption_too_short      2  4  +2",
        "  caption_rules     caption_too_short      0  1  +1",
        "",
        "recipe changes (A -> B):",
        "  name: a -> b",
        "  output.samples_per_shard: 10000 -> 3",
        "  stages.0.min_words: 3 -> 2",
        "  stages.1: (absent) -> caption_rules",
        "  stages.0: laion_caption -> (absent)",
    ]
    code, out, _ = stats(capsys, "--compare", a, a)
    assert code == 0 and out.splitlines()[-3:] == ["reasons: the same counts", "", "recipe: the same"]


def test_stage_union_keeps_both_orders() -> None:
    assert union_order(["read", "x", "y"], ["read", "n", "y", "m"]) == ["read", "n", "x", "y", "m"]
    assert union_order(["read", "x"], ["new", "read"]) == ["new", "read", "x"]


def test_recipe_changes_match_stages_by_name_and_name_a_reorder() -> None:
    a = {"stages": [{"stage": "s1", "name": None, "params": {"t": 0.28}}, {"stage": "s2", "name": None, "params": {}}]}
    b = {"stages": [{"stage": "s2", "name": None, "params": {}},
                    {"stage": "s1", "name": None, "params": {"t": 0.3}, "resources": {"gpus": 1}}]}
    assert recipe_changes(a, b) == [{"key": "stages", "a": ["s1", "s2"], "b": ["s2", "s1"]},
                                    {"key": "stages.1.t", "a": 0.28, "b": 0.3},
                                    {"key": "stages.1.resources.gpus", "b": 1}]


def test_compare_errors(capsys, runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = runs
    code, out, err = stats(capsys, "--compare", a, tmp_path)
    assert (code, out, err) == (2, "", f"curate: error: {tmp_path}: not a curate run directory (no manifest.json)\n")
    code, _, err = stats(capsys, a, "--compare", a, a)
    assert code == 2 and err == f"curate: error: stats --compare takes two runs, not RUN_DIR as well ({a})\n"
    code, _, err = stats(capsys)
    assert code == 2 and err == "curate: error: stats needs RUN_DIR (or --compare RUN_A RUN_B)\n"
