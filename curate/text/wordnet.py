"""WordNet 3.0 read straight from its dict files (``man 5 wndb``), offline.

Debian's ``wordnet-base`` puts the files in ``/usr/share/wordnet``; nltk refuses that
directory (it has no ``lexnames`` file), so this module parses ``data.<pos>``,
``index.noun`` and ``noun.exc`` itself. Only what curate's caption stages need is kept:

* every synset's lemma names (MetaCLIP's metadata part 1, Xu et al. 2023, §3.1);
* the noun and adjective lexicons (CC3M's "has a noun" rule, Sharma et al. 2018, §3);
* instance nouns mapped to a short hypernym word (CC3M's hypernymisation, §3: "Barack Obama"
  -> "president"), from the ``@i`` (instance hypernym) pointers of ``data.noun``;
* ``noun.exc`` and WordNet's morphy suffix rules, so plurals ("dogs", "women") are nouns.

Parsed once per process and directory (:func:`functools.lru_cache`): a stage's ``setup``
calls :meth:`WordNet.open` once per worker.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from curate.errors import UserError

DEFAULT_DIR = "/usr/share/wordnet"
#: Files read; a directory missing any of them is not a WordNet dict directory.
REQUIRED_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "noun.exc")
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
#: WordNet's morphy detachment rules for nouns (``man 7 morphy``): suffix -> replacement.
NOUN_SUFFIXES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                 ("men", "man"), ("ies", "y"))


class WordNet:
    """The parts of WordNet curate uses; build with :meth:`open` (cached per directory)."""

    def __init__(self, dict_dir: Path):
        self.dict_dir = dict_dir
        synsets = {pos: _read_synsets(dict_dir / name) for pos, name in POS_FILES.items()}
        self._lemmas = {pos: _unique(lemma for _, lemmas, _, _ in rows for lemma in lemmas) for pos, rows in synsets.items()}
        self._nouns = frozenset(lemma.lower() for lemma in self._lemmas["n"])
        self._adjectives = frozenset(lemma.lower() for lemma in self._lemmas["a"])
        self._instances = _instance_hypernyms(synsets["n"], _sense_order(dict_dir / "index.noun"))
        self._noun_exceptions = _exceptions(dict_dir / "noun.exc")

    @classmethod
    def open(cls, dict_dir: str | os.PathLike | None = None) -> WordNet:
        """The WordNet in ``dict_dir`` (None: ``$WORDNET_DIR``, else ``/usr/share/wordnet``);
        a missing or incomplete directory is a :class:`UserError` naming both fixes."""
        return _open_cached(check_dict_dir(dict_dir))

    def lemma_names(self, pos: str | None = None) -> list[str]:
        """Every synset lemma name of ``pos`` (n, v, a, r; all when None), in data-file order
        (nouns, verbs, adjectives, adverbs), unique, ``_`` as a space, case as written."""
        if pos is None:
            return _unique(lemma for p in POS_FILES for lemma in self._lemmas[p])
        if pos not in POS_FILES:
            raise ValueError(f"unknown part of speech {pos!r} (valid: {', '.join(POS_FILES)})")
        return list(self._lemmas[pos])

    def nouns(self) -> frozenset[str]:
        """Lower-cased noun lemmas, multi-word ones included ("hot dog")."""
        return self._nouns

    def adjectives(self) -> frozenset[str]:
        """Lower-cased adjective lemmas (head and satellite synsets)."""
        return self._adjectives

    def instance_hypernyms(self) -> dict[str, str]:
        """Instance noun lemma as written ("George Washington") -> a short hypernym word
        ("president"); see :func:`_instance_hypernyms` for how the word is chosen."""
        return self._instances

    def is_noun(self, word: str) -> bool:
        """True when lower-cased ``word`` or its base form (``noun.exc``, then morphy's noun
        suffix rules: "dogs" -> "dog", "churches" -> "church") is a WordNet noun."""
        word = word.lower()
        if word in self._nouns:
            return True
        base = self._noun_exceptions.get(word)
        if base is not None and base in self._nouns:
            return True
        return any(word.endswith(suffix) and word[: len(word) - len(suffix)] + ending in self._nouns
                   for suffix, ending in NOUN_SUFFIXES if len(word) > len(suffix))


def check_dict_dir(dict_dir: str | os.PathLike | None) -> Path:
    """``dict_dir`` (None: ``$WORDNET_DIR``, else ``/usr/share/wordnet``) as an absolute path, or
    a one-line :class:`UserError` when it lacks a file WordNet needs. Cheap (no parsing): stages
    call it from their params validators, at spec-check time."""
    chosen = dict_dir if dict_dir is not None else os.environ.get("WORDNET_DIR") or DEFAULT_DIR
    path = Path(chosen).expanduser().resolve()
    missing = [name for name in REQUIRED_FILES if not os.access(path / name, os.R_OK)]
    if missing:
        raise UserError(
            f"WordNet dict files not found in {path} (no readable {missing[0]}): install them with "
            "`apt-get install wordnet-base` or give the stage's `wordnet: PATH` parameter a WordNet dict directory"
        )
    return path


@lru_cache(maxsize=4)
def _open_cached(dict_dir: Path) -> WordNet:
    return WordNet(dict_dir)


def _read_synsets(path: Path) -> list[tuple[int, tuple[str, ...], tuple[int, ...], str]]:
    """``(offset, lemmas, instance hypernym offsets, gloss)`` per synset line of a ``data.<pos>``
    file (the gloss only where the synset is an instance; "" elsewhere, to keep memory small).

    Line format (``man 5 wndb``): ``offset lex_filenum ss_type w_cnt(hex) [word lex_id(hex)]...
    p_cnt(3 digits) [symbol offset pos source/target]... | gloss``; license lines start with
    spaces. Adjective lemmas may carry a syntactic marker ``(a)``, ``(p)``, ``(ip)``: dropped.
    """
    rows = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            count = int(fields[3], 16)
            lemmas = tuple(_lemma(word) for word in fields[4 : 4 + 2 * count : 2])
            at = 4 + 2 * count
            pointers = int(fields[at])
            instance_of = tuple(int(fields[at + 2 + 4 * i]) for i in range(pointers) if fields[at + 1 + 4 * i] == "@i")
            rows.append((int(fields[0]), lemmas, instance_of, gloss.strip() if instance_of else ""))
    return rows


def _lemma(word: str) -> str:
    if word.endswith(")"):
        word = word[: word.rindex("(")]
    return word.replace("_", " ")


def _sense_order(index_path: Path) -> dict[tuple[str, int], int]:
    """(lower-cased noun lemma, synset offset) -> the sense's rank in ``index.noun``, which lists
    a lemma's senses most frequent first."""
    rank: dict[tuple[str, int], int] = {}
    with open(index_path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            fields = line.split()
            lemma, synset_count = fields[0].replace("_", " "), int(fields[2])
            for position, offset in enumerate(fields[len(fields) - synset_count :]):
                rank[lemma, int(offset)] = position
    return rank


def _instance_hypernyms(nouns: list, sense_rank: dict[tuple[str, int], int]) -> dict[str, str]:
    """Instance lemma as written -> short hypernym word.

    Which hypernym, where an instance has several: the one whose lemma its gloss names first,
    since a gloss defines the instance by its main class ("1st President of the United States;
    commander-in-chief of the Continental Army" -> President of the United States, not general);
    where the gloss names none, the hypernym with the most instances (the most typical class).
    The word: that synset's first one-word lemma (WordNet lists a synset's lemmas most frequent
    first), else its first lemma; a one-word lemma capitalised only as a sentence start is
    lower-cased ("President" -> "president"; "American state", "FTO" kept). A lemma that names several instance synsets
    ("New York": the city, the state) takes the synset of its most frequent sense in
    ``index.noun`` ("city").
    """
    lemmas_of = {offset: lemmas for offset, lemmas, _, _ in nouns}
    instance_count: dict[int, int] = {}
    for _, _, instance_of, _ in nouns:
        for offset in instance_of:
            instance_count[offset] = instance_count.get(offset, 0) + 1
    chosen: dict[str, tuple[int, str]] = {}
    for offset, lemmas, instance_of, gloss in nouns:
        if not instance_of:
            continue
        hypernym = _main_class(instance_of, gloss.lower(), lemmas_of, instance_count)
        word = _short_word(lemmas_of[hypernym])
        for lemma in lemmas:
            rank = sense_rank.get((lemma.lower(), offset), len(sense_rank))  # absent from index.noun: last
            if lemma not in chosen or rank < chosen[lemma][0]:
                chosen[lemma] = (rank, word)
    return {lemma: word for lemma, (_, word) in chosen.items()}


def _main_class(instance_of: tuple[int, ...], gloss: str, lemmas_of: dict, instance_count: dict[int, int]) -> int:
    if len(instance_of) == 1:
        return instance_of[0]
    never = len(gloss) + 1

    def first_mention(offset: int) -> int:
        found = [m.start() for lemma in lemmas_of[offset] for m in [re.search(rf"\b{re.escape(lemma.lower())}\b", gloss)] if m]
        return min(found, default=never)

    return min(instance_of, key=lambda o: (first_mention(o), -instance_count[o], instance_of.index(o)))


def _short_word(lemmas: tuple[str, ...]) -> str:
    word = next((lemma for lemma in lemmas if " " not in lemma), lemmas[0])
    return word.lower() if " " not in word and word[1:] == word[1:].lower() else word


def _exceptions(path: Path) -> dict[str, str]:
    """Inflected form -> first base form, from a ``<pos>.exc`` file."""
    exceptions = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 2:
                exceptions.setdefault(fields[0].replace("_", " "), fields[1].replace("_", " "))
    return exceptions


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))
