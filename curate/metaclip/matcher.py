"""MetaCLIP's sub-string matching (Xu et al. 2023, "Demystifying CLIP Data", §3.2), exactly as
its code defines it (facebookresearch/MetaCLIP ``metaclip/substr_matching.py``):

* ``spacing(text)``: the text padded with a space on each side, each of ``, . ; : ? ! ```
  wrapped in spaces, and tabs, newlines and carriage returns turned into spaces;
* an entry matches a text iff ``f" {entry} "`` is a sub-string of the spaced text (case-sensitive,
  overlapping and nested matches all count).

MetaCLIP runs a pyahocorasick automaton over each spaced text in turn. :class:`EntryMatcher`
uses the same automaton but spaces a whole Arrow batch at once (two pyarrow.compute passes) and
walks it as one string, the texts joined by ``"\\n"``: after spacing no text contains a newline,
so no ``" entry "`` key without one can straddle two texts, and keys with one never match any
spaced text (they are left out). The matches come back as flat (end, id) pairs through
``np.fromiter`` and are mapped to rows with ``np.searchsorted``: per-text Python calls, sets and
lists go away (benchmarks/metaclip_match.py measures both ways in one run).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: MetaCLIP's ``puncts_to_wrap`` and ``chars_to_space``.
PUNCTUATION = (",", ".", ";", ":", "?", "!", "`")
WHITESPACE = ("\t", "\n", "\r")
_SEPARATOR = "\n"  # between texts in one walk: no spaced text contains it
#: Texts walked at once: bounds the joined string (~6 MB at laion-10k's ~95 characters a caption).
_CHUNK_ROWS = 65_536


def spacing(text: str) -> str:
    """MetaCLIP's ``spacing``: the reference definition, one text at a time."""
    spaced = f" {text} "
    for punct in PUNCTUATION:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in WHITESPACE:
        spaced = spaced.replace(char, " ")
    return spaced


def spaced_texts(texts: pa.Array | pa.ChunkedArray, suffix: str = "") -> pa.Array:
    """:func:`spacing` of every text (null as ""), vectorised; ``suffix`` appended to each."""
    texts = pc.fill_null(texts, "")
    # MetaCLIP's replaces in its order; literal passes beat one regex pass (9.7 vs 13.6 ms for
    # laion-10k's captions, and the spaces inserted hold no character of a later pass).
    for punct in PUNCTUATION:
        texts = pc.replace_substring(texts, punct, f" {punct} ")
    for char in WHITESPACE:
        texts = pc.replace_substring(texts, char, " ")
    spaced = pc.binary_join_element_wise(" ", texts, " " + suffix, "")
    return spaced.combine_chunks() if isinstance(spaced, pa.ChunkedArray) else spaced


def naive_match(entries: Sequence[str], text: str) -> list[int]:
    """The definition: ids of the entries ``e`` with ``f" {e} "`` in ``spacing(text)``."""
    spaced = spacing(text)
    return [i for i, entry in enumerate(entries) if f" {entry} " in spaced]


class EntryMatcher:
    """An Aho–Corasick automaton over ``f" {entry} "`` for every entry (ids are list positions);
    build it once per worker (500k entries: see benchmarks/metaclip_match.py for the time).
    Entries must be distinct (:func:`curate.metaclip.metadata.load_metadata` checks it): a key
    added twice keeps only its last id."""

    def __init__(self, entries: Sequence[str]):
        if len(set(entries)) != len(entries):
            raise ValueError("metadata entries must be distinct")
        self.size = len(entries)
        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for index, entry in enumerate(entries):
            if not any(char in entry for char in WHITESPACE):
                self._automaton.add_word(f" {entry} ", index)
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def match(self, texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
        """Per text, the matched entry ids: ``list<int32>``, sorted, each once."""
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        rows, ids = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for start in range(0, len(texts), _CHUNK_ROWS):
            chunk_rows, chunk_ids = self._match_chunk(texts.slice(start, _CHUNK_ROWS))
            rows.append(chunk_rows + start)
            ids.append(chunk_ids)
        rows, ids = np.concatenate(rows), np.concatenate(ids)
        counts = np.bincount(rows, minlength=len(texts))
        offsets = np.zeros(len(texts) + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids.astype(np.int32)))

    def _match_chunk(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(row, id) of every distinct match in ``texts``, sorted by row then id."""
        if self._empty or len(texts) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        spaced = spaced_texts(texts, suffix=_SEPARATOR)
        offsets = np.frombuffer(spaced.buffers()[1], np.int32, count=len(spaced) + 1, offset=4 * spaced.offset)
        joined = spaced.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]].decode("utf-8")
        # Row starts in characters (the automaton reports character positions).
        starts = np.zeros(len(spaced), np.int64)
        np.cumsum(pc.utf8_length(spaced).to_numpy()[:-1], out=starts[1:])
        flat = np.fromiter(itertools.chain.from_iterable(self._automaton.iter(joined)), np.int64)
        ends, ids = flat[0::2], flat[1::2]
        rows = np.searchsorted(starts, ends, side="right") - 1
        # Sort and drop repeats by hand: np.unique took 605 ms where np.sort took 16 ms (254k
        # matches of laion-10k against 500k entries, numpy 2.4).
        pairs = np.sort(rows * np.int64(self.size) + ids)
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if pairs.size else pairs
        return pairs // self.size, pairs % self.size
