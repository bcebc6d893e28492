"""Words of a caption and the repetition ratio, shared by the caption stages.

A word is a run of letters or digits, with apostrophes inside it ("don't", "dog's"; the
typographic ’ read as ') and nothing else: hyphens, slashes and punctuation separate words
("close-up" is two). Case is kept; rules that compare words lower-case them.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text`` in order, case kept, ’ normalised to '."""
    return [word.replace("’", "'") for word in WORD.findall(text)]


def repetition_ratio(tokens: list[str]) -> float:
    """Share of the words that repeat an earlier one, case-insensitive: (n - unique) / n
    ("a dog and a dog" -> 2/5); 0.0 for no words."""
    if not tokens:
        return 0.0
    return (len(tokens) - len({token.lower() for token in tokens})) / len(tokens)


def capitalised_ratio(tokens: list[str]) -> float:
    """Share of the words whose first character is an upper-case letter; 0.0 for no words."""
    if not tokens:
        return 0.0
    return sum(token[0].isupper() for token in tokens) / len(tokens)
