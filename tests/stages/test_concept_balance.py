"""LLaVA concept balancing (curate.stages.concept_balance): observe, the selection, verdicts, decide."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate import run_pipeline
from curate.config import load_spec
from curate.engine import global_phase
from curate.errors import ConfigError
from curate.schema import DROP_STAGE, ROW, UNIT, compute_uids, pairs_to_uids, uids_to_pairs
from curate.stages.concept_balance import ConceptBalanceFilter, ConceptBalanceParams, _draws, phrase_hashes, select
from curate.text.wordnet import DEFAULT_DIR
from tests.global_stage import reduce_in_process

WORDNET_DIR = Path(os.environ.get("WORDNET_DIR") or DEFAULT_DIR)
needs_wordnet = pytest.mark.skipif(not (WORDNET_DIR / "index.noun").is_file(),
                                   reason=f"WordNet dict files missing in {WORDNET_DIR} (apt-get install wordnet-base)")
U = [f"{i:032x}" for i in range(64)]


def batch(rows: list[tuple[int, int, str, str | None]]) -> pa.Table:
    """rows: (unit, row, uid, caption)."""
    units, positions, uids, captions = zip(*rows, strict=True)
    return pa.table({"uid": pa.array(uids, pa.string()), "caption": pa.array(captions, pa.string()),
                     UNIT: pa.array(units, pa.int32()), ROW: pa.array(positions, pa.int32()),
                     DROP_STAGE: pa.nulls(len(uids), pa.string())})


def stage_of(**params) -> ConceptBalanceFilter:
    stage = ConceptBalanceFilter(ConceptBalanceParams(**params))
    stage.setup()
    return stage


def decide(stage: ConceptBalanceFilter, table: pa.Table) -> list[tuple[bool, str | None, str | None]]:
    decision = stage.decide(stage.process(table))
    return list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def draw(uid: str, phrase: str, seed: int) -> int:
    pair = uids_to_pairs([uid])
    return int(_draws(pair["f0"], pair["f1"], phrase_hashes([phrase]), seed)[0])


# A pool computed by hand (min_count 3, per_phrase 3):
#   counts: "red car" 3 (0, 1, 8), "dog" 3 (4, 5, 6), "street" 4 (1, 2, 3, 4); "night" 2 (2, 6),
#   "night sky" 1, "cat" 1: skipped.
#   "red car" and "dog" (3 <= 3 captions) take all of theirs; "street" comes last (most frequent):
#   rows 1 and 4 are already taken, so it takes one more of rows 2 and 3, by the lower draw.
POOL = [
    "red car",
    "red car on a street",
    "a street at night",
    "a street",
    "a dog on a street",
    "a dog",
    "a dog in the night",
    "a night sky",
    "red car",
    None,
    "a cat",
]


@needs_wordnet
def test_hand_computed_selection(tmp_path: Path) -> None:
    table = batch([(0, i, U[i], caption) for i, caption in enumerate(POOL)])
    stage = stage_of(min_count=3, per_phrase=3, seed=7)
    assert reduce_in_process(stage, [table], tmp_path) == 8  # rows 0-6 and 8 carry a frequent phrase
    street = 2 if draw(U[2], "street", 7) < draw(U[3], "street", 7) else 3
    other = 5 - street
    expected = [
        (True, None, None), (True, None, None),
        (True, None, None), (True, None, None),  # rows 2 and 3: one of them replaced below
        (True, None, None), (True, None, None), (True, None, None),
        (False, "concept_no_phrase", "min_count=3"),
        (True, None, None),
        (False, "concept_no_phrase", "min_count=3"),
        (False, "concept_no_phrase", "min_count=3"),
    ]
    expected[other] = (False, "concept_not_selected", "phrase=street")
    assert decide(stage, table) == expected
    scored = stage.process(table)
    assert scored.column_names[-3:] == ["concept_count", "concept_selected", "concept_phrase"]
    assert scored.column("concept_phrase").to_pylist() == [
        "red car", "red car", "street", "street", "dog", "dog", "dog", None, "red car", None, None]
    assert scored.column("concept_count").to_pylist() == [3, 3, 4, 4, 3, 3, 3, None, 3, None, None]


@needs_wordnet
def test_the_seed_decides_the_draw(tmp_path: Path) -> None:
    """Over seeds, each of the two candidates for "street"'s last place is taken sometimes."""
    table = batch([(0, i, U[i], caption) for i, caption in enumerate(POOL)])
    winners = set()
    for seed in range(8):
        stage = stage_of(min_count=3, per_phrase=3, seed=seed)
        reduce_in_process(stage, [table], tmp_path / str(seed))
        keep = stage.decide(stage.process(table)).keep.to_pylist()
        assert keep[2] != keep[3]
        winners.add(2 if keep[2] else 3)
    assert winners == {2, 3}


@needs_wordnet
def test_rarer_phrases_take_first_and_count_toward_the_quota(tmp_path: Path) -> None:
    # min_count 2, per_phrase 2: "red car" (rows 0, 4) and "dog" (rows 1, 5) are rarer than
    # "street" (rows 0-3) and take all their rows; rows 0 and 1 fill "street"'s 2, so rows 2 and 3
    # are not taken, whatever the draw.
    captions = ["red car on a street", "a dog on a street", "a street", "a street", "red car", "a dog"]
    table = batch([(0, i, U[i], c) for i, c in enumerate(captions)])
    stage = stage_of(min_count=2, per_phrase=2)
    reduce_in_process(stage, [table], tmp_path)
    assert decide(stage, table) == [(True, None, None)] * 2 + [(False, "concept_not_selected", "phrase=street")] * 2 \
        + [(True, None, None)] * 2
    assert stage.process(table).column("concept_phrase").to_pylist() == ["red car", "dog", "street", "street",
                                                                         "red car", "dog"]


def naive_selection(pool: list[tuple[str, list[str]]], min_count: int, per_phrase: int, seed: int) -> dict[str, str]:
    """LLaVA's procedure as written, one phrase at a time: uid -> the phrase that took it."""
    counts = Counter(p for _, phrases in pool for p in set(phrases))
    frequent = [p for p, count in counts.items() if count >= min_count]
    taken: dict[str, str] = {}
    for phrase in sorted(frequent, key=lambda p: (counts[p], int(phrase_hashes([p])[0]))):
        carriers = [uid for uid, phrases in pool if phrase in phrases]
        fresh = sorted((uid for uid in carriers if uid not in taken), key=lambda uid: (draw(uid, phrase, seed), uid))
        for uid in fresh[: max(0, per_phrase - (len(carriers) - len(fresh)))]:
            taken[uid] = phrase
    return taken


def summary_of(pool: list[tuple[str, list[str]]], positions: list[tuple[int, int]]) -> pa.Table:
    """The observe summary of ``pool`` with each caption at (unit, row) ``positions[i]``."""
    rows = [(i, phrase) for i, (_, phrases) in enumerate(pool) for phrase in phrases]
    index = [i for i, _ in rows]
    pairs = uids_to_pairs([pool[i][0] for i in index]) if rows else np.zeros(0, np.dtype("u8,u8"))
    return pa.table({"phrase_hash": pa.array(phrase_hashes([p for _, p in rows]), pa.uint64()),
                     UNIT: pa.array([positions[i][0] for i in index], pa.int32()),
                     ROW: pa.array([positions[i][1] for i in index], pa.int32()),
                     "uid_hi": pairs["f0"], "uid_lo": pairs["f1"]})


def selected_uids(pool, positions, **params) -> dict[str, tuple[int, bool]]:
    verdicts = select(summary_of(pool, positions), **params)
    where = {position: uid for (uid, _), position in zip(pool, positions, strict=True)}
    return {where[(unit, row)]: (count, selected) for unit, row, count, selected in zip(
        verdicts.column(UNIT).to_pylist(), verdicts.column(ROW).to_pylist(),
        verdicts.column("concept_count").to_pylist(), verdicts.column("concept_selected").to_pylist(), strict=True)}


pools = st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=4, unique=True), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(pools, st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**64 - 1))
def test_selection_equals_the_naive_procedure(phrase_lists, min_count: int, per_phrase: int, seed: int) -> None:
    pool = [(U[i], phrases) for i, phrases in enumerate(phrase_lists)]
    expected = naive_selection(pool, min_count, per_phrase, seed)
    got = selected_uids(pool, [(0, i) for i in range(len(pool))], min_count=min_count, per_phrase=per_phrase, seed=seed)
    assert {uid for uid, (_, selected) in got.items() if selected} == set(expected)
    counts = Counter(p for _, phrases in pool for p in phrases)
    carriers = {uid for uid, phrases in pool if any(counts[p] >= min_count for p in phrases)}
    assert set(got) == carriers  # every row with a frequent phrase has a verdict, no other
    for uid, phrase in expected.items():
        assert got[uid][0] == counts[phrase]  # the count of the phrase that took it


def test_selection_does_not_depend_on_units_or_observe_order() -> None:
    rng = random.Random(5)
    pool = [(f"{rng.getrandbits(128):032x}", rng.sample("abcdefghij", rng.randint(0, 3))) for _ in range(400)]
    params = {"min_count": 3, "per_phrase": 12, "seed": 11}
    one_unit = selected_uids(pool, [(0, i) for i in range(len(pool))], **params)
    shuffled = list(range(len(pool)))
    rng.shuffle(shuffled)  # the same rows cut into 7 units differently, numbered in another order
    units = selected_uids(pool, [(shuffled[i] % 7, shuffled[i] // 7) for i in range(len(pool))], **params)
    assert units == one_unit
    kept = {uid for uid, (_, selected) in one_unit.items() if selected}
    assert 0 < len(kept) < len(pool)
    other_seed = selected_uids(pool, [(0, i) for i in range(len(pool))], **{**params, "seed": 12})
    assert {uid for uid, (_, selected) in other_seed.items() if selected} != kept


def test_more_frequent_phrases_than_a_16_bit_key_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past RADIX_PHRASES frequent phrases the pairs are grouped by a 32-bit key: same selection."""
    from curate.stages import concept_balance

    rng = random.Random(8)
    pool = [(f"{rng.getrandbits(128):032x}", rng.sample("abcdefghijklmnop", rng.randint(0, 4))) for _ in range(500)]
    params = {"min_count": 2, "per_phrase": 9, "seed": 3}
    radix = selected_uids(pool, [(0, i) for i in range(len(pool))], **params)
    monkeypatch.setattr(concept_balance, "RADIX_PHRASES", 2)
    assert selected_uids(pool, [(0, i) for i in range(len(pool))], **params) == radix
    assert sum(selected for _, selected in radix.values()) == len(
        naive_selection(pool, params["min_count"], params["per_phrase"], params["seed"]))


@needs_wordnet
def test_two_phases_keep_the_same_uids_however_the_rows_are_cut_into_units(tmp_path: Path) -> None:
    rng = random.Random(3)
    nouns = ["dog", "cat", "red car", "street", "beach", "old house", "tree", "boat", "mountain", "bird"]
    captions = [f"a {rng.choice(nouns)} near a {rng.choice(nouns)}" for _ in range(300)]
    uids = [f"{rng.getrandbits(128):032x}" for _ in captions]

    def kept(rows_per_unit: int, root: Path) -> set[str]:
        tables = [batch([(i // rows_per_unit, i % rows_per_unit, uids[i], captions[i])
                         for i in range(start, min(start + rows_per_unit, len(captions)))])
                  for start in range(0, len(captions), rows_per_unit)]
        stage = stage_of(per_phrase=10, seed=1)
        reduce_in_process(stage, tables[::-1], root)  # units observed in another order too
        return {uid for table in tables for uid, keep in zip(table.column("uid").to_pylist(),
                                                              stage.decide(stage.process(table)).keep.to_pylist(),
                                                              strict=True) if keep}

    whole = kept(300, tmp_path / "a")
    assert kept(7, tmp_path / "b") == whole == kept(64, tmp_path / "c")
    assert 0 < len(whole) < 300


@needs_wordnet
def test_observe_emits_one_32_byte_row_per_caption_and_phrase() -> None:
    stage = stage_of()
    summary = stage.observe(batch([(0, 4, U[4], "a red car on a street"), (2, 0, U[0], None), (2, 1, U[1], "a dog")]))
    assert summary.column_names == ["phrase_hash", UNIT, ROW, "uid_hi", "uid_lo"]
    assert summary.column(UNIT).to_pylist() == [0, 0, 2] and summary.column(ROW).to_pylist() == [4, 4, 1]
    assert summary.column("phrase_hash").to_pylist() == list(phrase_hashes(["red car", "street", "dog"]))
    assert summary.column("uid_lo").to_pylist() == [4, 4, 1] and summary.nbytes == 3 * 32


@needs_wordnet
def test_no_frequent_phrase_at_all(tmp_path: Path) -> None:
    table = batch([(0, 0, U[0], "a dog"), (0, 1, U[1], "a cat"), (0, 2, U[2], None)])
    stage = stage_of()
    assert reduce_in_process(stage, [table], tmp_path) == 0
    assert decide(stage, table) == [(False, "concept_no_phrase", "min_count=3")] * 3


@needs_wordnet
def test_a_verdict_for_a_row_whose_caption_changed_is_a_bug(tmp_path: Path) -> None:
    stage = stage_of()
    reduce_in_process(stage, [batch([(0, i, U[i], "a dog") for i in range(3)])], tmp_path)
    with pytest.raises(RuntimeError, match="a verdict's phrase is not among its row's phrases"):
        stage.process(batch([(0, 0, U[0], "a cat")]))


def test_more_pairs_than_one_reduce_takes_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.errors import UserError
    from curate.stages import concept_balance

    monkeypatch.setattr(concept_balance, "MAX_PAIRS", 2)
    pool = [(U[0], ["a", "b"]), (U[1], ["a"])]
    with pytest.raises(UserError) as info:
        select(summary_of(pool, [(0, 0), (0, 1)]), min_count=1, per_phrase=1, seed=0)
    assert str(info.value) == ("concept_balance: 3 (caption, phrase) pairs for one reduce, more than its 2 (the "
                               "selection runs in one process): balance parts of the pool separately")


def test_defaults_are_llavas() -> None:
    params = ConceptBalanceParams().model_dump()
    assert (params["min_count"], params["per_phrase"], params["seed"]) == (3, 100, 0)
    assert ConceptBalanceFilter.key == ()  # one reduce call: the selection is sequential over phrases


def test_a_missing_wordnet_is_one_line_at_spec_check(tmp_path: Path) -> None:
    spec = {"input": {"path": "in.parquet"}, "stages": [{"stage": "concept_balance", "wordnet": str(tmp_path)}]}
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert str(info.value) == (
        f"<dict>: stages[0].wordnet: WordNet dict files not found in {tmp_path} (no readable data.noun): install them "
        "with `apt-get install wordnet-base` or give the stage's `wordnet: PATH` parameter a WordNet dict directory")


@needs_wordnet
def test_through_the_engine_on_units_of_21_rows(tmp_path: Path, sort_shuffle, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real run on Ray (observe in the stage's actors, the reduce on a Ray worker after a
    shuffle, as for summaries over 32 MB, verdicts per unit) on units of 21 rows keeps the uids the
    in-process reduce keeps with every row in one unit; every dropped row has its reason."""
    rng = random.Random(9)
    nouns = ["dog", "cat", "red car", "street", "beach", "old house", "tree", "boat"]
    captions = [f"a {rng.choice(nouns)} near a {rng.choice(nouns)}" for _ in range(80)] + ["a unicorn", None]
    urls = [f"http://h/{i}.jpg" for i in range(len(captions))]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"url": urls, "caption": pa.array(captions, pa.string())}), pool)
    monkeypatch.setattr(global_phase, "LOCAL_REDUCE_BYTES", 0)
    spec = {"name": "c", "input": {"path": str(pool), "rows_per_unit": 21},
            "stages": [{"stage": "concept_balance", "per_phrase": 6, "seed": 2}]}
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    kept = np.load(result.run_dir / "uids.npy")

    uids = compute_uids(pa.array(urls), pa.array(captions, pa.string()), str(pool.resolve())).to_pylist()  # the reader's
    table = batch([(0, i, uid, caption) for i, (uid, caption) in enumerate(zip(uids, captions, strict=True))])
    stage = stage_of(per_phrase=6, seed=2)
    reduce_in_process(stage, [table], tmp_path / "in_process")
    expected = [uid for uid, keep in zip(uids, stage.decide(stage.process(table)).keep.to_pylist(), strict=True) if keep]
    assert sorted(pairs_to_uids(kept["f0"], kept["f1"])) == sorted(expected)
    funnel = result.funnel.to_json()["stages"][-1]
    assert funnel["in"] == 82 and funnel["dropped"] == 82 - len(expected) > 0
    assert set(funnel["reasons"]) == {"concept_not_selected", "concept_no_phrase"}
    assert funnel["reasons"]["concept_no_phrase"] == 2  # "unicorn" is seen once; no caption
