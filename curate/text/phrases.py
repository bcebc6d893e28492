"""Noun phrases of a caption, offline: a small chunker over closed-class word lists and WordNet.

LLaVA (Liu et al. 2023, "Visual Instruction Tuning", App. on the CC3M-595K filter) counted the
noun phrases spaCy finds in each caption. A parser is not available offline, so this module
chunks with word lists instead:

1. **Tokens**: the lower-cased caption is cut into words (letters, with inner hyphens and
   apostrophes: "black-and-white" and "t-shirt" are WordNet entries) and single other characters
   (punctuation, digits, symbols), which only separate phrases. (:func:`curate.text.tokens.words`
   drops punctuation and splits at hyphens, so it cannot tell where a phrase must stop.)
2. **Classes**: a closed-class word (determiner, preposition, pronoun, conjunction, auxiliary:
   :mod:`curate.text.lexicon`) separates phrases and is never part of one, so determiners are
   dropped ("a red car" -> "red car"); a WordNet noun (plurals and irregular forms included:
   "dogs", "children") or adjective continues the current phrase; any other word separates.
   A possessive ("dog's") is its base word, then a separation ("dog's bed" -> "dog", "bed").
3. **Participles**: a word in -ing or -ed whose stem is a WordNet verb ("running" -> run,
   "parked" -> park), right after a word that is a noun and not an adjective, is a verb, not a
   compound: it separates and is dropped ("man running on the beach" -> "man", "beach"), as
   are the participles right after it ("woman standing waiting" -> "woman").
4. **Phrases**: each maximal run of noun/adjective words, cut after its last noun, is one phrase
   ("big red car parked" -> "big red car"); a run without a noun gives none. A caption's phrases
   are unique, in order of first appearance.

Limits (what a parser would get right and this does not): words that are both a noun and a verb
are nouns, so a third-person verb after a noun joins the phrase ("dog runs" -> "dog runs");
rule 3 also splits real noun compounds whose head is an -ing noun ("office building" ->
"office"); adverbs WordNet also lists as adjectives join ("very tall man"); names and words
WordNet lacks separate phrases. Phrases are compared as written (lower-cased), not lemmatised,
as LLaVA's spaCy noun chunks were: "dog" and "dogs" are two phrases.
"""

from __future__ import annotations

import os
import re

from curate.text.lexicon import CLOSED_CLASS
from curate.text.wordnet import WordNet

#: A word: letters with inner hyphens or apostrophes; anything else that is not a space is one
#: separating character.
_TOKEN = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|[^\s]")
_POSSESSIVE = ("'s", "’s")
#: Token classes (bit flags): noun, adjective, participle stem found in the verb lexicon, possessive.
NOUN, ADJECTIVE, PARTICIPLE, POSSESSIVE = 1, 2, 4, 8
CONTENT = NOUN | ADJECTIVE
#: Per-extractor cache of token classes: captions repeat words heavily, and one dict look-up is
#: cheaper than the closed-class, WordNet (morphy) and participle checks. Cleared when full, so
#: odd inputs (hashes, URLs) cannot grow it without bound.
_CACHE_LIMIT = 1 << 19


class PhraseExtractor:
    """Noun phrases of captions under the rules of this module's docstring."""

    def __init__(self, wordnet: WordNet, closed_class: frozenset[str]):
        self.wordnet = wordnet
        self.closed_class = closed_class
        self.adjectives = wordnet.adjectives()
        self.verbs = frozenset(lemma.lower() for lemma in wordnet.lemma_names("v"))
        self._tokens: dict[str, tuple[str, int]] = {}

    @classmethod
    def open(cls, wordnet_dir: str | os.PathLike | None = None) -> PhraseExtractor:
        """An extractor on the WordNet in ``wordnet_dir`` (see :meth:`WordNet.open`) and the
        closed-class lists of :mod:`curate.text.lexicon`."""
        return cls(WordNet.open(wordnet_dir), CLOSED_CLASS)

    def phrases(self, caption: str | None) -> list[str]:
        """The caption's noun phrases, unique, in order of first appearance (None: none)."""
        if not caption:
            return []
        found: dict[str, None] = {}
        run: list[str] = []
        last_noun = 0  # length of ``run`` up to and including its last noun
        after_noun = False  # the word before was a noun and not an adjective, or a participle
        tokens = self._tokens
        for token in _TOKEN.findall(caption.lower()):
            word, classes = tokens.get(token) or self._token(token)
            if classes & CONTENT and not (classes & PARTICIPLE and after_noun):
                run.append(word)
                if classes & NOUN:
                    last_noun = len(run)
                after_noun = classes & CONTENT == NOUN
                if not classes & POSSESSIVE:
                    continue
            else:
                # A chain of participles is one verb group: "woman standing waiting" -> "woman".
                after_noun = after_noun and bool(classes & PARTICIPLE)
            if last_noun:
                found[" ".join(run[:last_noun])] = None
            run, last_noun = [], 0
        if last_noun:
            found[" ".join(run[:last_noun])] = None
        return list(found)

    def _token(self, token: str) -> tuple[str, int]:
        """(word, classes) of a token, cached: a possessive is its base word plus POSSESSIVE."""
        if len(self._tokens) >= _CACHE_LIMIT:
            self._tokens.clear()
        possessive = token.endswith(_POSSESSIVE) and len(token) > 2
        word = token[:-2] if possessive else token
        entry = (word, self._classify(word) | (POSSESSIVE if possessive else 0))
        self._tokens[token] = entry
        return entry

    def _classify(self, word: str) -> int:
        if word in self.closed_class or not word[0].isalpha():
            return 0
        classes = (NOUN if self.wordnet.is_noun(word) else 0) | (ADJECTIVE if word in self.adjectives else 0)
        if word.endswith(("ing", "ed")) and any(stem in self.verbs for stem in _participle_stems(word)):
            classes |= PARTICIPLE
        return classes


def _participle_stems(word: str) -> list[str]:
    """Candidate verb stems of an -ing/-ed form: "walking" -> walk, "riding" -> ride,
    "running" -> run (doubled consonant), "parked" -> park, "used" -> use."""
    cut = word[:-3] if word.endswith("ing") else word[:-2]
    if len(cut) < 2:
        return []
    stems = [cut] if cut.endswith("e") else [cut, cut + "e"]  # "seed" is not a form of "see"
    if len(cut) > 2 and cut[-1] == cut[-2]:
        stems.append(cut[:-1])
    return stems
