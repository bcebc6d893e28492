"""``metaclip_balance``: counts, keep probabilities and decisions by hand; the per-uid draw; the
kept count against its expectation; the data card; the same subset on 1 and 2 workers and across
a kill and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from curate.cli import main
from curate.metaclip.card import render_card
from curate.pipeline import run_pipeline
from curate.schema import DROP_STAGE, UID
from curate.stages.metaclip_balance import MetaClipBalanceFilter, MetaClipBalanceParams, uid_draws
from tests.cli_runs import curate_run, kill_after_first_unit
from tests.global_stage import reduce_in_process

U = [f"{i:032x}" for i in range(40)]


def _rows(uids: list[str], entries: list[list[int] | None]) -> pa.Table:
    return pa.table({UID: pa.array(uids, pa.string()), "metaclip_entries": pa.array(entries, pa.list_(pa.int32())),
                     DROP_STAGE: pa.nulls(len(uids), pa.string())})


def _reduced(tmp_path: Path, tables: list[pa.Table], **params) -> MetaClipBalanceFilter:
    stage = MetaClipBalanceFilter(MetaClipBalanceParams(**params))
    reduce_in_process(stage, tables, tmp_path / "state" / stage.name)
    return stage


def test_observe_counts_entries_and_samples() -> None:
    stage = MetaClipBalanceFilter(MetaClipBalanceParams())
    summary = stage.observe(_rows(U[:4], [[0, 2], [2], [], None]))
    assert summary.to_pydict() == {"entry": [0, 2, -1, -2], "count": [1, 2, 4, 2]}  # -1: samples, -2: matched


def test_reduce_sums_per_entry_over_units(tmp_path) -> None:
    stage = _reduced(tmp_path, [_rows(U[:3], [[0, 2], [2], []]), _rows(U[3:5], [[2, 7], None])])
    state = pq.read_table(tmp_path / "state" / "metaclip_balance" / "state.parquet")
    assert sorted(zip(state.column("entry").to_pylist(), state.column("count").to_pylist(), strict=True)) == [
        (-2, 3), (-1, 5), (0, 1), (2, 3), (7, 1)]
    assert (stage.samples, stage.matched) == (5, 3)


# Pool counts: entry 0 once, 2 four times, 5 twice, 9 eight times; t = 2.
POOL = [[0], [2], [2], [2, 5], [2, 9], [5, 9], [9], [9], [9], [9], [9], [9], [], []]


def test_keep_probability_and_decision_by_hand(tmp_path) -> None:
    stage = _reduced(tmp_path, [_rows([f"{i:032x}" for i in range(100, 114)], POOL)], t=2)
    # Draws of these uids (seed 0): U[2] .836, U[4] .473, U[6] .555, U[8] .932, U[10] .726, U[12] .628, U[14] .719
    rows = _rows([U[2], U[4], U[6], U[8], U[10], U[12], U[14]], [[0], [2], [2], [2, 5], [], [2, 7], [2, 9]])
    scored = stage.process(rows)
    # p_e = t / max(count, t): entry 0 -> 1, 2 -> 0.5, 5 -> 1, 9 -> 0.25, 7 (never counted) -> 1.
    assert scored.column("metaclip_keep_prob").to_pylist() == pytest.approx([1.0, 0.5, 0.5, 1.0, 0.0, 1.0, 0.625])
    assert scored.column("metaclip_draw").to_pylist() == pytest.approx([0.836, 0.473, 0.555, 0.932, 0.726, 0.628, 0.719],
                                                                       abs=5e-4)
    decision = stage.decide(scored)
    assert decision.keep.to_pylist() == [True, True, False, True, False, True, False]
    assert decision.reason.to_pylist() == [None, None, "metaclip_balanced_out", None, "metaclip_no_match", None,
                                           "metaclip_balanced_out"]
    assert decision.detail.to_pylist() == [None, None, "prob=0.5", None, "entries=0", None, "prob=0.625"]


def test_draw_is_a_function_of_uid_and_seed() -> None:
    uid = "0123456789abcdef0123456789abcdef"
    # Pinned: a change here changes which samples every existing recipe keeps.
    assert uid_draws(pa.array([uid]), 0)[0] == 0.6425570176315359
    assert uid_draws(pa.array([uid]), 7)[0] == 0.4547728802925468
    many = pa.array([f"{i:032x}" for i in range(200_000)])
    draws = uid_draws(many, 0)
    assert np.array_equal(draws[1000:2000], uid_draws(many.slice(1000, 1000), 0))  # no dependence on the batch
    assert abs(draws.mean() - 0.5) < 0.005 and draws.min() >= 0 and draws.max() < 1
    assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 19_000  # ~20,000 each
    assert np.corrcoef(draws, uid_draws(many, 1))[0, 1] < 0.01


def test_kept_count_matches_its_expectation(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n, entries = 200_000, 5_000
    per_sample = rng.integers(0, 5, n)
    flat = np.minimum(rng.zipf(1.3, per_sample.sum()) - 1, entries - 1).astype(np.int32)
    offsets = np.r_[0, np.cumsum(per_sample)].astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    rows = pa.table({UID: pa.array([f"{i:032x}" for i in rng.integers(0, 2**62, n)]), "metaclip_entries": lists,
                     DROP_STAGE: pa.nulls(n, pa.string())})
    stage = _reduced(tmp_path, [rows.slice(0, 120_000), rows.slice(120_000)], t=500)
    scored = stage.process(rows)
    probs = scored.column("metaclip_keep_prob").to_numpy()
    kept = int(pc.sum(stage.decide(scored).keep).as_py())
    expected, sd = probs.sum(), np.sqrt((probs * (1 - probs)).sum())
    assert abs(kept - expected) < 4 * sd
    assert abs(kept - expected) / expected < 0.01


def test_data_card(tmp_path) -> None:
    (tmp_path / "names.json").write_text(json.dumps([f"e{i}" for i in range(12)]), encoding="utf-8")
    stage = _reduced(tmp_path, [_rows([f"{i:032x}" for i in range(14)], POOL)], t=2, metadata=str(tmp_path / "names.json"))
    shard = tmp_path / "00000.parquet"
    pq.write_table(pa.table({"metaclip_entries": pa.array([[0], [2, 9], [5]], pa.list_(pa.int32()))}), shard)
    name, card = stage.data_card(str(tmp_path), [str(shard)])
    assert name == "metaclip.json"
    head = [{"id": 9, "entry": "e9", "count": 8}, {"id": 2, "entry": "e2", "count": 4},
            {"id": 5, "entry": "e5", "count": 2}, {"id": 0, "entry": "e0", "count": 1}]
    assert card == {
        "card": "metaclip", "t": 2, "seed": 0, "metadata": str(tmp_path / "names.json"), "entries_total": 12,
        "pool": {"samples": 14, "matched": 12, "matched_fraction": 12 / 14},
        "before": {"label": "in the pool (before balancing)", "entries_matched": 4, "entries_at_or_over_t": 3,
                   "matches": 15, "quantiles": pytest.approx({"p0": 1.0, "p25": 1.75, "p50": 3.0, "p75": 5.0, "p90": 6.8,
                                                               "p99": 7.88, "p100": 8.0}),
                   "head": head, "tail": head[::-1]},
        "after": {"label": "in the shards (after balancing and any later stage)", "samples": 3, "entries_matched": 4,
                  "entries_at_or_over_t": 0, "matches": 4,
                  "quantiles": {"p0": 1.0, "p25": 1.0, "p50": 1.0, "p75": 1.0, "p90": 1.0, "p99": 1.0, "p100": 1.0},
                  "head": [{"id": i, "entry": f"e{i}", "count": 1} for i in (0, 2, 5, 9)],
                  "tail": [{"id": i, "entry": f"e{i}", "count": 1} for i in (9, 5, 2, 0)]},
    }
    assert render_card(card) == [
        "MetaCLIP balancing (t = 2, seed 0): 12 of 14 samples matched an entry (85.7%); metadata of 12 entries",
        "  in the pool (before balancing): 4 entries matched, 3 at or over t; counts p0 1, p25 2, p50 3, p75 5, "
        "p90 7, p99 8, p100 8",
        "    head: e9 (8), e2 (4), e5 (2), e0 (1)",
        "    tail: e0 (1), e5 (2), e2 (4), e9 (8)",
        "  in the shards (after balancing and any later stage): 3 samples, 4 entries matched, 0 at or over t; "
        "counts p0 1, p25 1, p50 1, p75 1, p90 1, p99 1, p100 1",
        "    head: e0 (1), e2 (1), e5 (1), e9 (1)",
        "    tail: e9 (1), e5 (1), e2 (1), e0 (1)",
    ]


# -- through the engine --------------------------------------------------------------------------

WORDS = [f"w{i}" for i in range(30)]


def _corpus(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """``n`` captions "a photo of wA and wB" (w by a Zipf law) and metadata ["photo", w0..w29]:
    "photo" and the first words are head entries at t = 40, the rest tail entries."""
    rng = np.random.default_rng(5)
    picks = np.minimum(rng.zipf(1.5, (n, 2)) - 1, len(WORDS) - 1)
    captions = [f"a photo of {WORDS[a]} and {WORDS[b]}" if i % 17 else "no match here" for i, (a, b) in enumerate(picks)]
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(n)], "caption": captions}), tmp_path / "in.parquet")
    (tmp_path / "metadata.json").write_text(json.dumps(["photo", *WORDS]), encoding="utf-8")
    return tmp_path / "in.parquet", tmp_path / "metadata.json"


def _spec(path: Path, metadata: Path, rows_per_unit: int, workers: int) -> dict:
    """``workers`` matcher actors and balance tasks side by side (each takes 1 / workers of a
    CPU, so together they fit the 2-CPU test Ray, whose actors hold their CPUs for the run)."""
    resources = {"cpus": 1 / workers}
    return {"name": "meta", "input": {"path": str(path), "rows_per_unit": rows_per_unit},
            "stages": [{"stage": "metaclip_match", "metadata": str(metadata),
                        "resources": {**resources, "actors": [workers, workers]}},
                       {"stage": "metaclip_balance", "t": 40, "resources": resources}]}


def _outcome(run: Path) -> tuple[list[str], list[tuple]]:
    ledger = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]).to_pylist()
    kept = sorted(pa.concat_tables([pq.read_table(p, columns=[UID]) for p in (run / "shards").glob("*.parquet")])
                  .column(UID).to_pylist())
    return kept, sorted((r["uid"], r["stage"], r["reason"], r["detail"]) for r in ledger)


def test_same_subset_on_one_and_two_workers(tmp_path, ray_session, capsys) -> None:
    """One unit (one block: one worker at a time) on one matcher actor, against 17 units on two
    matcher actors and two balance tasks side by side."""
    path, metadata = _corpus(tmp_path, 600)
    one = run_pipeline(_spec(path, metadata, 600, 1), output=str(tmp_path / "one"))
    two = run_pipeline(_spec(path, metadata, 37, 2), output=str(tmp_path / "two"))
    kept, ledger = _outcome(tmp_path / "one")
    assert (kept, ledger) == _outcome(tmp_path / "two")
    reasons = {r[2] for r in ledger}
    assert reasons == {"metaclip_no_match", "metaclip_balanced_out"}
    assert one.funnel.kept == two.funnel.kept == len(kept)
    assert sum(r[2] == "metaclip_no_match" for r in ledger) == len(range(0, 600, 17))
    assert 100 < len(kept) < 500  # balancing cut the head entries

    # The data card, as the run's end will write it; entry names from the run's metaclip_match.
    stage = MetaClipBalanceFilter(MetaClipBalanceParams(t=40))
    name, card = stage.data_card(str(tmp_path / "two"), sorted(str(p) for p in (tmp_path / "two" / "shards").glob("*.parquet")))
    matched = 600 - len(range(0, 600, 17))
    assert (card["entries_total"], card["pool"]["samples"], card["pool"]["matched"]) == (31, 600, matched)
    assert card["before"]["head"][0] == {"id": 0, "entry": "photo", "count": matched}  # in every matched caption
    assert card["after"]["head"][0] == {"id": 0, "entry": "photo", "count": len(kept)}
    assert card["after"]["samples"] == len(kept)
    (tmp_path / "two" / "stats" / name).write_text(json.dumps(card))
    assert main(["stats", str(tmp_path / "two")]) == 0
    assert "\n".join(render_card(card)) in capsys.readouterr().out


@pytest.mark.slow
def test_kill_and_resume_keeps_the_same_subset(tmp_path, ray_session) -> None:
    path, metadata = _corpus(tmp_path, 600)  # 24 units: enough to be killed between commits, quick to rerun twice
    spec_path = tmp_path / "meta.yaml"
    spec = _spec(path, metadata, 25, 2)
    spec["resources"] = {"cpus": 2}
    spec_path.write_text(yaml.safe_dump(spec))
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    assert 1 <= kill_after_first_unit(spec_path, killed) < 24

    done = curate_run(spec_path, killed)
    output, _ = done.communicate(timeout=300)
    assert done.returncode == 0, output
    run_pipeline(spec, output=str(clean))  # the clean run in this process: one Ray start-up less
    assert _outcome(killed) == _outcome(clean)
