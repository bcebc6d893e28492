"""Noun-phrase chunker (curate.text.phrases) on hand-checked captions, with the real WordNet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from curate.text.lexicon import CLOSED_CLASS
from curate.text.phrases import PhraseExtractor
from curate.text.wordnet import DEFAULT_DIR, WordNet

WORDNET_DIR = Path(os.environ.get("WORDNET_DIR") or DEFAULT_DIR)
pytestmark = pytest.mark.skipif(not (WORDNET_DIR / "index.noun").is_file(),
                                reason=f"WordNet dict files missing in {WORDNET_DIR} (apt-get install wordnet-base)")


@pytest.fixture(scope="module")
def extractor() -> PhraseExtractor:
    return PhraseExtractor.open()


@pytest.mark.parametrize(("caption", "phrases"), [
    # determiners dropped, lower-cased, a run of adjectives and nouns is one phrase
    ("A big red car in the street", ["big red car", "street"]),
    ("The Honda motorcycle AT night", ["motorcycle", "night"]),  # a word WordNet lacks ("honda") separates
    # punctuation and digits separate; plurals and irregular plurals are nouns
    ("a cup of coffee, 2 donuts and knives", ["cup", "coffee", "donuts", "knives"]),
    ("children in a park", ["children", "park"]),
    # a run is cut after its last noun; a run without a noun gives nothing
    ("a car parked", ["car"]),
    ("very happy", []),
    # participles after a noun are verbs: separated and dropped, chains too
    ("a man running on the beach", ["man", "beach"]),
    ("a woman standing waiting for the bus", ["woman", "bus"]),
    ("woman holding umbrella", ["woman", "umbrella"]),
    # ... but a participle before a noun, or first, is a modifier or a noun
    ("a running man", ["running man"]),
    ("wedding dress", ["wedding dress"]),
    # possessives end a phrase; hyphenated WordNet entries are one word
    ("the dog's bed", ["dog", "bed"]),
    ("black-and-white photo of a t-shirt", ["black-and-white photo", "t-shirt"]),
    # multi-word nouns are runs of nouns
    ("hot dog with mustard", ["hot dog", "mustard"]),
    # unique, in order of first appearance
    ("dog and cat and dog", ["dog", "cat"]),
    # nothing to find
    ("", []),
    (None, []),
    ("Ein Hund im Garten", []),
    ("!!! 123 ...", []),
])
def test_phrases(extractor: PhraseExtractor, caption: str | None, phrases: list[str]) -> None:
    assert extractor.phrases(caption) == phrases


def test_documented_limits(extractor: PhraseExtractor) -> None:
    """What a parser gets right and the chunker does not (the module docstring's limits)."""
    assert extractor.phrases("a dog runs") == ["dog runs"]  # a verb that is also a noun joins
    assert extractor.phrases("office building") == ["office"]  # an -ing head after a noun is a participle
    assert extractor.phrases("dogs and a dog") == ["dogs", "dog"]  # not lemmatised, as spaCy's chunks


def test_closed_class_words_are_never_nouns() -> None:
    wordnet = WordNet.open()
    assert wordnet.is_noun("it") and wordnet.is_noun("a")  # WordNet: information technology, vitamin A
    extractor = PhraseExtractor(wordnet, CLOSED_CLASS)
    assert extractor.phrases("it is a can of beans") == ["beans"]  # "can" (MD) is closed-class too
    assert PhraseExtractor(wordnet, frozenset()).phrases("it is a can of beans") == ["it is a can", "beans"]
