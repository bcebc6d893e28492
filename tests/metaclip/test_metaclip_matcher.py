"""MetaCLIP's spacing and sub-string matching: hand-computed cases, and the Aho–Corasick matcher
against the naive definition on random and adversarial texts (hypothesis)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.metaclip import matcher
from curate.metaclip.matcher import EntryMatcher, naive_match, spaced_texts, spacing


@pytest.mark.parametrize(("text", "spaced"), [
    ("a,b", " a , b "),
    ("Hi!\tthere\nyou\r", " Hi !  there you  "),
    ("`x`", "  ` x `  "),
    ("U.S.A.; ok?", " U . S . A .  ;  ok ?  "),
    ("", "  "),
    ("café 猫", " café 猫 "),
    ("a - b (c) 'd'", " a - b (c) 'd' "),  # only , . ; : ? ! ` are spaced out
])
def test_spacing_as_metaclip_defines_it(text, spaced) -> None:
    assert spacing(text) == spaced
    assert spaced_texts(pa.array([text])).to_pylist() == [spaced]


def test_spaced_texts_treats_null_as_empty() -> None:
    assert spaced_texts(pa.array([None, "x"], pa.string())).to_pylist() == ["  ", " x "]


ENTRIES = ["dog", "hot dog", "hot", "Dog", "dog.", "New York", "New York City", "York", "a", "", "café", "猫", "U.S.",
           "dogs"]


@pytest.mark.parametrize(("text", "ids"), [
    # " A hot dog ,  in New York City .  ": nested and overlapping entries all match; the
    # double space after "," matches the empty entry; "Dog" and "a" differ in case.
    ("A hot dog, in New York City.", [0, 1, 2, 5, 6, 7, 9]),
    ("Un café au lait 猫 ", [9, 10, 11]),  # unicode entries; the trailing space doubles with the pad
    (None, [9]),  # a missing caption is "": "  " holds only the empty entry
    ("dog\tdog", [0]),  # a tab is a space; each entry once
    ("dogs", [13]),  # "dog" is a prefix of "dogs", not a match
    ("the U.S. dog.", [0, 9]),  # "U.S." and "dog." never match: spacing splits their dots off
    ("Dog", [3]),
])
def test_matches_hand_computed(text, ids) -> None:
    assert EntryMatcher(ENTRIES).match(pa.array([text], pa.string())).to_pylist() == [ids]
    assert naive_match(ENTRIES, text or "") == ids


def test_match_column_types_and_rows_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr(matcher, "_CHUNK_ROWS", 2)  # rows of later chunks keep their own place
    texts = pa.chunked_array([["hot dog", None], ["York", "nothing", "dog"]])
    matched = EntryMatcher(ENTRIES).match(texts)
    assert matched.type == pa.list_(pa.int32())
    assert matched.to_pylist() == [[0, 1, 2], [9], [7], [], [0]]


def test_no_entry_can_match_means_empty_lists() -> None:
    assert EntryMatcher(["a\tb"]).match(pa.array(["a b", "a\tb"])).to_pylist() == [[], []]
    assert EntryMatcher([]).match(pa.array(["x"])).to_pylist() == [[]]


def test_repeated_entries_are_a_bug() -> None:
    with pytest.raises(ValueError, match="distinct"):
        EntryMatcher(["a", "a"])


# A small alphabet makes overlaps, nesting, shared prefixes and punctuation frequent.
ALPHABET = "ab ,.;:?!`\t\n\ré猫A"
texts_strategy = st.lists(st.one_of(st.none(), st.text(ALPHABET, max_size=24)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), texts=texts_strategy)
def test_aho_corasick_equals_the_naive_definition(data, texts) -> None:
    # Entries: random strings, plus pieces of the spaced texts themselves (so most of them match,
    # many nested in or overlapping each other, and some are prefixes of others).
    pieces = [s[i:j].strip(" ") for s in (spacing(t or "") for t in texts) for i in range(len(s)) for j in
              range(i + 1, min(len(s), i + 12) + 1)]
    drawn = st.text(ALPHABET, max_size=6) | (st.sampled_from(pieces) if pieces else st.just("a"))
    entries = data.draw(st.lists(drawn, max_size=16, unique=True))
    matched = EntryMatcher(entries).match(pa.array(texts, pa.string())).to_pylist()
    assert matched == [naive_match(entries, t or "") for t in texts]
