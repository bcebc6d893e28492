"""Caption rewriting shared by the caption stages: whole-word phrase replacement (CC3M's
hypernymisation, CC12M's ``<PERSON>``) and the ``caption`` / ``caption_original`` columns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import ahocorasick
import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import CAPTION

ORIGINAL = "caption_original"


class PhraseReplacer:
    """Replace whole-word, case-sensitive occurrences of phrases: at each position the longest
    phrase wins, matches do not overlap, and a match must not touch a letter, digit or hyphen on
    either side ("Paris" is not replaced inside "Parisian", nor "New Haven" inside the hospital
    "Yale-New Haven"). Aho–Corasick, built once (per worker)."""

    def __init__(self, replacements: Mapping[str, str]):
        self._automaton = ahocorasick.Automaton()
        for phrase, replacement in replacements.items():
            if phrase:
                self._automaton.add_word(phrase, (len(phrase), replacement))
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def __call__(self, text: str) -> str:
        """``text`` with every chosen occurrence replaced (``text`` itself when none)."""
        if self._empty:
            return text
        found = []
        for end, (length, replacement) in self._automaton.iter(text):
            start = end + 1 - length
            if _word_edge(text, start - 1) and _word_edge(text, end + 1):
                found.append((start, -length, replacement))
        if not found:
            return text
        pieces, at = [], 0
        for start, negative_length, replacement in sorted(found):
            if start < at:
                continue  # overlaps a match already taken (leftmost, then longest, wins)
            pieces += [text[at:start], replacement]
            at = start - negative_length
        pieces.append(text[at:])
        return "".join(pieces)


def _word_edge(text: str, index: int) -> bool:
    return index < 0 or index >= len(text) or not (text[index].isalnum() or text[index] == "-")


def rewritten_captions(batch: pa.Table, captions: Iterable[str | None]) -> dict[str, pa.Array]:
    """The ``caption`` column set to ``captions`` and ``caption_original``: the caption as read
    where this stage changed it, else null (an earlier stage's original is kept)."""
    new = pa.array(list(captions), pa.string())
    old = batch.column(CAPTION).combine_chunks()
    changed = pc.fill_null(pc.not_equal(new, old), False)
    original = pc.if_else(changed, old, pa.scalar(None, pa.string()))
    if ORIGINAL in batch.column_names:
        original = pc.coalesce(batch.column(ORIGINAL).combine_chunks(), original)
    return {CAPTION: new, ORIGINAL: original}
