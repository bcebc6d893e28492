"""Words, ratios and phrase replacement (curate.text.tokens, curate.text.rewrite)."""

from __future__ import annotations

import pyarrow as pa

from curate.text.lexicon import CLOSED_CLASS, DETERMINERS, PREPOSITIONS, PRONOUNS
from curate.text.rewrite import PhraseReplacer, rewritten_captions
from curate.text.tokens import capitalised_ratio, repetition_ratio, words


def test_words_split_on_everything_but_letters_digits_and_inner_apostrophes() -> None:
    assert words("Don’t stop: a close-up of the dog's tail_end, 2x (1994)!") == [
        "Don't", "stop", "a", "close", "up", "of", "the", "dog's", "tail", "end", "2x", "1994",
    ]
    assert words("") == [] and words(" - !! ") == []
    assert words("café au lait 日本") == ["café", "au", "lait", "日本"]


def test_repetition_ratio_is_repeated_words_over_words() -> None:
    assert repetition_ratio(words("a dog and a dog")) == 2 / 5
    assert repetition_ratio(words("A dog and a DOG")) == 2 / 5  # case-insensitive
    assert repetition_ratio(words("one two three")) == 0.0
    assert repetition_ratio([]) == 0.0


def test_capitalised_ratio() -> None:
    assert capitalised_ratio(words("A Red barn in Ohio")) == 3 / 5
    assert capitalised_ratio(words("3 dogs")) == 0.0
    assert capitalised_ratio([]) == 0.0


def test_closed_class_lists() -> None:
    assert {"a", "an", "the", "this", "every"} <= DETERMINERS
    assert {"in", "on", "of", "with", "to", "under"} <= PREPOSITIONS
    assert "because" not in PREPOSITIONS  # a subordinating conjunction, not a preposition
    assert "his" in PRONOUNS and "his" not in DETERMINERS  # PRP$ in the Penn tag set
    assert {"and", "is", "can", "there"} <= CLOSED_CLASS
    assert all(word == word.lower() for word in CLOSED_CLASS)


def test_phrase_replacer_whole_words_leftmost_longest() -> None:
    replace = PhraseReplacer({"New York": "city", "New York City": "big city", "York": "town", "Paris": "capital"})
    assert replace("New York City at night") == "big city at night"  # the longest at a position wins
    assert replace("York, New York") == "town, city"
    assert replace("Parisian cafe; Paris.") == "Parisian cafe; capital."  # whole words only
    hyphen = PhraseReplacer({"New Haven": "city"})
    assert hyphen("Yale-New Haven hospital, New Haven's") == "Yale-New Haven hospital, city's"  # a hyphen joins words
    assert replace("new york") == "new york"  # case-sensitive
    assert replace("") == ""
    assert PhraseReplacer({})("New York") == "New York"


def test_rewritten_captions_keep_the_original_where_changed() -> None:
    batch = pa.table({"caption": pa.array(["a", "b", None], pa.string())})
    columns = rewritten_captions(batch, ["A", "b", None])
    assert columns["caption"].to_pylist() == ["A", "b", None]
    assert columns["caption_original"].to_pylist() == ["a", None, None]
    earlier = batch.append_column("caption_original", pa.array(["x", None, None], pa.string()))
    assert rewritten_captions(earlier, ["A", "B", None])["caption_original"].to_pylist() == ["x", "b", None]
