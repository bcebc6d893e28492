"""``cc3m_caption``: Conceptual Captions' alt-text filters and hypernymisation (Sharma et al.
2018, "Conceptual Captions", §3 "Text-based Filtering" and "Text Transformation with
Hypernymization"), offline: a WordNet lexicon and closed-class word lists instead of the Google
Cloud Natural Language part-of-speech tagger, wordfreq instead of the paper's Wikipedia
vocabulary, WordNet instance hypernyms instead of the Knowledge Graph.

Per caption, in order (each rule its own ledger reason; the scores are columns, so a finished
run re-thresholds without rescoring):

1. Boilerplate (§3: "predefined boiler-plate prefix/suffix sequences matching the text are
   cropped, e.g. 'click to enlarge picture', 'stock photo'; we also drop text which begins/ends
   in certain patterns, e.g. 'embedded image permalink', 'profile photo'"): one list,
   ``boilerplate``, cropped where it begins or ends the caption ("A red barn - stock photo" ->
   "A red barn"); where nothing else remains, the row is dropped (``boilerplate_caption``,
   column ``caption_boilerplate``: the phrase). One list, because a caption that is only
   boilerplate is dropped either way and a real caption before it is worth keeping.
2. "candidates where the first word is not capitalized" (``first_word_not_capitalised``;
   column ``caption_first_word``: a first word starting with a digit is not capitalised).
3. "or with too high capitalized-word ratio" (``too_many_capitalised_words``; column
   ``caption_capitalised_ratio``, dropped above ``max_capitalised_ratio``). The paper gives no
   figure: 0.5 drops Title Case alt-text (65% of laion-10k) and 0.7% of COCO's human captions
   (val2017), and keeps "A view of New York from the Hudson" (4 of 8).
4. "candidates with no determiner, no noun, or no preposition are discarded"
   (``missing_determiner`` / ``missing_noun`` / ``missing_preposition``; boolean columns
   ``caption_has_*``): closed-class lists and WordNet nouns with morphy's plural rules
   (:mod:`curate.text.parts`: any word that can be a noun counts, so ``missing_noun`` is rare).
5. "candidates with a high rate of token repetition are discarded" (``repetitive_caption``;
   column ``caption_repetition`` = (words - distinct words) / words over the words outside the
   closed classes (:func:`curate.text.parts.content_words`: "a", "the", "of" repeat in any long
   sentence), dropped above ``max_repetition``). The paper gives no figure; 0.2 is CC12M's
   (Changpinyo et al. 2021, §2), which relaxed CC3M's filters, so CC3M's was at least as strict.
6. "discard candidates that contain tokens that are not found in this vocabulary" (VC: tokens
   seen at least 5 times in English Wikipedia) (``rare_token``, detail the token; columns
   ``caption_min_zipf``, ``caption_rarest_token``): wordfreq's English Zipf frequency at least
   ``min_zipf``. Default 1.0, the floor of wordfreq's list (1 per 10^8 words; 5 in Wikipedia's
   ~3·10^9 is 0.2 in Zipf terms): a word wordfreq has never seen is rare. The corpus-count form
   of the rule (counts over the whole pool) is the separate global ``rare_words`` stage; a
   recipe that uses it instead sets ``min_zipf: 0`` here.

Not reproduced: the noun-ratio rule (a lexicon cannot tag nouns), sentiment polarity and the
porn/profanity classifiers (use ``caption_blocklist``), and the image filters (``cc3m_image``).

Hypernymisation (§3): multi-word WordNet instance nouns are replaced, as written, by a short
word of their instance hypernym ("George Washington" -> "president"; see
:meth:`curate.text.wordnet.WordNet.instance_hypernyms`). Single words are left alone: most are
ambiguous ("Washington": a state, a city, a president). The rules score the cropped caption
before replacement, as the paper filters before it transforms. ``caption`` becomes the
rewritten text; ``caption_original`` holds the caption as read where it changed, else null.
WordNet 3.0 (Debian's) predates 2009: "Barack Obama" is not in it, "Abraham Lincoln" is.
"""

from __future__ import annotations

import re
from functools import lru_cache

import ahocorasick
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from curate.schema import CAPTION
from curate.stages.base import Decision, Filter, Rule, StageParams, append_columns, first_failure
from curate.stages.registry import register
from curate.text.parts import checked_wordnet, content_words, has_determiner, has_noun, has_preposition, wordnet_field
from curate.text.rewrite import ORIGINAL, PhraseReplacer, rewritten_captions
from curate.text.tokens import capitalised_ratio, repetition_ratio, words
from curate.text.wordnet import WordNet

#: Alt-text boilerplate, cropped where it begins or ends a caption (CC3M §3 names the first
#: four; the rest are the same family, seen on stock and social sites).
BOILERPLATE = (
    "click to enlarge picture", "click to enlarge", "stock photo", "embedded image permalink", "profile photo",
    "click here to enlarge", "royalty free stock photo", "royalty free stock image", "free stock photo",
    "stock image", "stock picture", "stock photography", "stock vector", "profile picture", "cover photo",
    "view larger image", "view larger", "view full size", "image may contain", "image not available",
    "no image available",
)
#: What may join boilerplate to the caption: spaces and the punctuation alt-text uses for it.
_JOIN = r"[\s\-–—:|,;.·•()\[\]]*"


class Cc3mCaptionParams(StageParams):
    boilerplate: list[str] = Field(list(BOILERPLATE), description="phrases cropped where they begin or end a caption "
                                   "(case-insensitive, whole words); a caption with nothing else is dropped")
    max_capitalised_ratio: float = Field(0.5, ge=0, le=1, description="drop above this share of capitalised words")
    max_repetition: float = Field(0.2, ge=0, le=1, description="drop above this share of repeated words, "
                                  "closed-class words not counted (CC12M §2's figure)")
    min_zipf: float = Field(1.0, ge=0, description="drop a caption with a word whose wordfreq English Zipf "
                            "frequency is below this (0 turns the rule off)")
    hypernymize: bool = Field(True, description="replace multi-word WordNet instance nouns by their hypernym")
    wordnet: str | None = wordnet_field()

    _wordnet = field_validator("wordnet")(checked_wordnet)


@register
class Cc3mCaptionFilter(Filter):
    """CC3M's text filters and hypernymisation (Sharma et al. 2018, §3); see the module docstring."""

    kind = "cc3m_caption"
    Params = Cc3mCaptionParams
    reads = (CAPTION,)
    writes = (CAPTION, ORIGINAL, "caption_boilerplate", "caption_first_word", "caption_capitalised_ratio",
              "caption_has_determiner", "caption_has_noun", "caption_has_preposition", "caption_repetition",
              "caption_min_zipf", "caption_rarest_token")

    def setup(self) -> None:
        from wordfreq import zipf_frequency  # its word lists load on first use, once per worker

        wordnet = WordNet.open(self.params.wordnet)
        # Words repeat (Zipf): caching the answers per word, with the boilerplate pre-check below,
        # took laion-10k from 14k to ~30k captions per CPU-second (benchmarks/cc_captions.py;
        # wordfreq's own cache sits under its log and rounding). 2^18 words each: ~30 MB at most.
        self._is_noun = lru_cache(maxsize=1 << 18)(wordnet.is_noun)
        self._zipf = lru_cache(maxsize=1 << 18)(lambda word: zipf_frequency(word, "en"))
        self._has_phrase = _substring_finder([phrase.lower() for phrase in self.params.boilerplate])
        multi_word = {k: v for k, v in wordnet.instance_hypernyms().items() if " " in k} if self.params.hypernymize else {}
        self._hypernymize = PhraseReplacer(multi_word)
        phrases = "|".join(re.escape(p) for p in sorted(self.params.boilerplate, key=len, reverse=True))
        self._prefix = re.compile(rf"^{_JOIN}({phrases})(?![^\W_]){_JOIN}", re.IGNORECASE) if phrases else None
        self._suffix = re.compile(rf"{_JOIN}(?<![^\W_])({phrases}){_JOIN}$", re.IGNORECASE) if phrases else None

    def process(self, batch: pa.Table) -> pa.Table:
        columns: dict[str, list] = {name: [] for name in self.writes if name not in (CAPTION, ORIGINAL)}
        captions = []
        for caption in batch.column(CAPTION).to_pylist():
            text, boilerplate = self._crop(caption or "")
            tokens = words(text)
            lowered = [token.lower() for token in tokens]
            rarest, rarest_zipf = self._rarest(lowered)
            columns["caption_boilerplate"].append(boilerplate)
            columns["caption_first_word"].append(tokens[0] if tokens else "")
            columns["caption_capitalised_ratio"].append(capitalised_ratio(tokens))
            columns["caption_has_determiner"].append(has_determiner(lowered))
            columns["caption_has_noun"].append(has_noun(lowered, self._is_noun))
            columns["caption_has_preposition"].append(has_preposition(lowered))
            columns["caption_repetition"].append(repetition_ratio(content_words(lowered)))
            columns["caption_min_zipf"].append(rarest_zipf)
            columns["caption_rarest_token"].append(rarest)
            captions.append(caption if text == (caption or "") else text)
        captions = [c if c is None else self._hypernymize(c) for c in captions]
        scores = {name: pa.array(values, _TYPES.get(name, pa.string())) for name, values in columns.items()}
        return append_columns(batch, {**rewritten_captions(batch, captions), **scores})

    def decide(self, scored: pa.Table) -> Decision:
        p = self.params
        first = scored.column("caption_first_word")
        ratio, repetition = scored.column("caption_capitalised_ratio"), scored.column("caption_repetition")
        zipf = scored.column("caption_min_zipf")
        has = {part: scored.column(f"caption_has_{part}") for part in ("determiner", "noun", "preposition")}
        boilerplate = scored.column("caption_boilerplate")
        rules = [
            Rule(pc.is_valid(boilerplate), "boilerplate_caption", "phrase", boilerplate),
            Rule(pc.invert(pc.utf8_is_upper(pc.utf8_slice_codeunits(first, 0, 1))), "first_word_not_capitalised",
                 "first_word", first),
            Rule(pc.greater(ratio, _f32(p.max_capitalised_ratio)), "too_many_capitalised_words", "capitalised_ratio", ratio),
            *[Rule(pc.invert(flag), f"missing_{part}", f"has_{part}", flag) for part, flag in has.items()],
            Rule(pc.greater(repetition, _f32(p.max_repetition)), "repetitive_caption", "repetition", repetition),
            Rule(pc.less(zipf, _f32(p.min_zipf)), "rare_token", "token", scored.column("caption_rarest_token")),
        ]
        return first_failure(rules)

    def _crop(self, caption: str) -> tuple[str, str | None]:
        """The caption without boilerplate at either end, and the phrase where nothing is left."""
        if not self._has_phrase(caption.lower()):
            return caption, None  # the common case: one automaton pass instead of two regex searches
        text, phrase = caption, None
        while True:
            match = self._prefix.search(text) or self._suffix.search(text)
            if match is None:
                break
            text, phrase = text[: match.start()] + text[match.end() :], match.group(1)
        if phrase is None:
            return caption, None
        if not any(ch.isalnum() for ch in text):
            return caption, phrase.lower()
        return text, None

    def _rarest(self, lowered: list[str]) -> tuple[str | None, float | None]:
        """The word with the lowest Zipf frequency and that frequency (None, None: no words)."""
        if not lowered:
            return None, None
        zipfs = list(map(self._zipf, lowered))
        zipf = min(zipfs)
        return lowered[zipfs.index(zipf)], zipf


def _substring_finder(phrases: list[str]):
    """A function telling whether a text contains any of ``phrases`` (Aho–Corasick)."""
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        automaton.add_word(phrase, phrase)
    if len(automaton) == 0:
        return lambda text: False
    automaton.make_automaton()
    return lambda text: next(automaton.iter(text), None) is not None


def _f32(threshold: float) -> pa.Scalar:
    """A threshold compared in the scores' float32: 2/10 scores float32(0.2), above the double 0.2."""
    return pa.scalar(threshold, pa.float32())


_TYPES = {
    "caption_capitalised_ratio": pa.float32(), "caption_repetition": pa.float32(), "caption_min_zipf": pa.float32(),
    "caption_has_determiner": pa.bool_(), "caption_has_noun": pa.bool_(), "caption_has_preposition": pa.bool_(),
}
