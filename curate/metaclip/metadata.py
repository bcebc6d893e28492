"""MetaCLIP metadata files: reading one (ours or MetaCLIP's released ``metadata.json``) and
building one (``curate metaclip build-metadata``; Xu et al. 2023, §3.1 and App. A.1).

MetaCLIP's metadata is ~500k strings from four sources (facebookresearch/MetaCLIP
``metaclip/build_metadata.py``), after the numbers "0".."99" it starts from:

1. WordNet synsets. MetaCLIP takes each synset's NLTK name (its first lemma, lower-cased); we
   take every lemma name of every synset as written (``curate.text.wordnet``), a superset that
   keeps proper nouns' case ("Barack Obama"), since matching is case-sensitive;
2. unigrams occurring at least ``min_count`` (100) times in a corpus (MetaCLIP: Wikipedia);
3. bigrams with pointwise mutual information at least ``min_pmi`` (30). MetaCLIP scores them with
   NLTK's ``BigramAssocMeasures.pmi``, a log2: ``log2(c(w1 w2) * N / (c(w1) * c(w2)))`` with N the
   corpus' unigram tokens, and so do we. A bigram's PMI is at most log2(N), so 30 needs a
   corpus of at least 2^30 (~1.07e9) tokens, as Wikipedia is; lower ``min_pmi`` for a small corpus;
4. titles (MetaCLIP: Wikipedia articles viewed at least 70 times): here a file, one per line.

Tokens are MetaCLIP 2's ``simple_tokenizer`` (``metaclip/metadata/build_ngram.py``): runs of
non-space characters, with every punctuation character and CJK/Thai/Lao/Burmese/Khmer/Tibetan
character a token of its own; punctuation tokens are not counted and break bigrams. As in
MetaCLIP, an empty entry or a lone punctuation character is never an entry.

Our file is UTF-8 text, one entry a line: ``entry<TAB>sources`` (sources comma-separated, in the
order number, wordnet, unigram, bigram, title). Entries come in a deterministic order: numbers,
WordNet's lemma order, unigrams by count (then text), bigrams by PMI (then text), titles in file
order; an entry found again adds its source to its first line. Entries holding a tab, newline or
carriage return are left out: no spaced text contains one, so they never match (and would break
the format).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator

from curate import storage
from curate.errors import InputError, UserError

SOURCES = ("number", "wordnet", "unigram", "bigram", "title")

# MetaCLIP 2's is_punctuation (string.punctuation + additional_punctuation) and is_cjk_or_similar.
_EXTRA_PUNCTUATION = "，。、；：？¿！“”‘’（）【】《》〈〉「」『』～—"
PUNCTUATION = frozenset(string.punctuation + _EXTRA_PUNCTUATION)
_SINGLE_CHAR_RANGES = ("\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002ebef\uf900-\ufaff"
                       "\u2e80-\u2eff\u2f00-\u2fdf\u2ff0-\u2fff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u0f00-\u0fff")
_PUNCT_CLASS = "".join(re.escape(c) for c in sorted(PUNCTUATION))
_TOKEN = re.compile(f"[{_PUNCT_CLASS}{_SINGLE_CHAR_RANGES}]|[^\\s{_PUNCT_CLASS}{_SINGLE_CHAR_RANGES}]+")
_UNWRITABLE = ("\t", "\n", "\r")
_FORBIDDEN = frozenset(string.punctuation)  # MetaCLIP's `forbidden`: a lone ASCII punctuation character


# -- reading ---------------------------------------------------------------------------------------


def load_metadata(path: str) -> list[str]:
    """The entries of a metadata file, in order (an entry's id is its position): MetaCLIP's
    ``metadata.json`` (a JSON list of strings; a JSON object's keys, as MetaCLIP 2's per-language
    files, also work), or ours / plain text (the first tab-separated column of each non-empty line)."""
    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such metadata file (build one with `curate metaclip build-metadata`, "
                         "or give MetaCLIP's metadata.json)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: metadata is not UTF-8 text (byte {err.start})") from None
    if path.endswith(".json") or text.lstrip().startswith(("[", "{")):
        entries = _json_entries(path, text)
    else:
        entries = [line.rstrip("\r").split("\t", 1)[0] for line in text.split("\n")]
        entries = [entry for entry in entries if entry]
    if not entries:
        raise InputError(f"{path}: the metadata holds no entry")
    if len(set(entries)) != len(entries):
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry in seen:
                raise InputError(f"{path}: entry {entry!r} repeats (ids {seen[entry]} and {index}); "
                                 "each entry must appear once")
            seen[entry] = index
    return entries


def _json_entries(path: str, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON metadata (line {err.lineno}: {err.msg})") from None
    entries = list(data) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise InputError(f"{path}: expected a JSON list of strings (MetaCLIP's metadata.json)")
    return entries


# -- counting a corpus -----------------------------------------------------------------------------


def count_ngrams(lines: Iterable[str], unigrams: Counter, bigrams: Counter) -> int:
    """Add the unigrams and adjacent pairs of ``lines`` to the counters; returns tokens counted."""
    tokens = 0
    for line in lines:
        run: list[str] = []
        for token in _TOKEN.findall(line):
            if token in PUNCTUATION:  # a lone punctuation character: not counted, breaks bigrams
                tokens += _add_run(run, unigrams, bigrams)
                run = []
            else:
                run.append(token)
        tokens += _add_run(run, unigrams, bigrams)
    return tokens


def _add_run(run: list[str], unigrams: Counter, bigrams: Counter) -> int:
    unigrams.update(run)
    bigrams.update(zip(run, run[1:], strict=False))
    return len(run)


def corpus_lines(path: str, column: str, progress) -> Iterator[str]:
    """The documents of a corpus file, streamed: a parquet ``column``, or text lines (``.gz``
    decompressed). ``progress(done, total)`` is told bytes (text) or rows (parquet)."""
    if not storage.exists(path):
        raise InputError(f"{path}: no such corpus file")
    if path.endswith(".parquet"):
        yield from _parquet_lines(path, column, progress)
        return
    total = storage.file_size(path)
    with storage.open_input(path) as raw, (gzip.open(raw) if path.endswith(".gz") else contextlib.nullcontext(raw)) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")  # a stray bad byte is not worth a stop
        for number, line in enumerate(text):
            yield line
            if number % 65_536 == 0:
                progress(raw.tell(), total)
        progress(total, total)


def _parquet_lines(path: str, column: str, progress) -> Iterator[str]:
    import pyarrow.parquet as pq

    fs, local = storage.filesystem_of(path)
    try:
        file = pq.ParquetFile(fs.open_input_file(local))
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable parquet file ({err})") from None
    names = file.schema_arrow.names
    if column not in names:
        raise InputError(f"{path}: no column {column!r} (has: {', '.join(names)}; pass --column)")
    done = 0
    for batch in file.iter_batches(columns=[column], batch_size=65_536):
        yield from (text for text in batch.column(0).to_pylist() if text is not None)
        done += batch.num_rows
        progress(done, file.metadata.num_rows)


# -- building --------------------------------------------------------------------------------------


def frequent_unigrams(unigrams: Counter, min_count: int) -> list[str]:
    """Unigrams seen at least ``min_count`` times, by count then text."""
    return [w for w, c in sorted(unigrams.items(), key=lambda item: (-item[1], item[0])) if c >= min_count]


def bigram_pmi(bigrams: Counter, unigrams: Counter, tokens: int) -> dict[tuple[str, str], float]:
    """NLTK's ``BigramAssocMeasures.pmi`` as MetaCLIP used it: log2(c(w1 w2) * N / (c(w1) c(w2)))."""
    log_n = math.log2(tokens) if tokens else 0.0
    return {pair: math.log2(count) + log_n - math.log2(unigrams[pair[0]]) - math.log2(unigrams[pair[1]])
            for pair, count in bigrams.items()}


def strong_bigrams(pmi: dict[tuple[str, str], float], min_pmi: float) -> list[str]:
    """Bigrams with PMI at least ``min_pmi``, by PMI then text."""
    kept = sorted(((-score, f"{a} {b}") for (a, b), score in pmi.items() if score >= min_pmi))
    return [bigram for _, bigram in kept]


def read_titles(path: str) -> list[str]:
    """Titles, one a line, stripped; blank lines skipped."""
    if not storage.exists(path):
        raise InputError(f"{path}: no such titles file")
    try:
        text = storage.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: titles are not UTF-8 text (byte {err.start})") from None
    return [title for title in (line.strip() for line in text.split("\n")) if title]


def merge_sources(sources: dict[str, Iterable[str]]) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """Entries in first-seen order (sources in :data:`SOURCES` order) -> their sources; and per
    source how many entries it gave, how many were new and how many were left out."""
    entries: dict[str, list[str]] = {}
    summary: dict[str, dict[str, int]] = {}
    for source in SOURCES:
        if source not in sources:
            continue
        given = new = skipped = 0
        for entry in sources[source]:
            given += 1
            if not entry or entry in _FORBIDDEN or any(c in entry for c in _UNWRITABLE):
                skipped += 1
                continue
            listed = entries.setdefault(entry, [])
            new += not listed
            if source not in listed:
                listed.append(source)
        summary[source] = {"given": given, "new": new, "left_out": skipped}
    return entries, summary


def write_metadata(out: str, entries: dict[str, list[str]]) -> None:
    """``entry<TAB>sources`` lines, written whole under a temporary name and renamed into place."""
    body = "".join(f"{entry}\t{','.join(sources)}\n" for entry, sources in entries.items()).encode("utf-8")
    if storage.is_local(out):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        temporary = f"{out}.tmp-{os.getpid()}"
        with open(temporary, "wb") as handle:
            handle.write(body)
        os.replace(temporary, out)
    else:
        storage.write_bytes(out, body)


def build_metadata(out: str, wordnet: list[str] | None, corpora: list[str], column: str, titles: str | None,
                   min_count: int, min_pmi: float, progress=lambda name, done, total: None) -> dict:
    """Build a metadata file; returns a summary (entries per source, corpus tokens)."""
    if min_count < 1:
        raise UserError(f"--min-count must be at least 1, not {min_count}")
    sources: dict[str, Iterable[str]] = {"number": [str(n) for n in range(100)]}  # MetaCLIP starts from 0..99
    if wordnet is not None:
        sources["wordnet"] = wordnet
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    tokens = 0
    for path in corpora:
        tokens += count_ngrams(corpus_lines(path, column, lambda done, total, p=path: progress(p, done, total)),
                               unigrams, bigrams)
    if corpora:
        sources["unigram"] = frequent_unigrams(unigrams, min_count)
        sources["bigram"] = strong_bigrams(bigram_pmi(bigrams, unigrams, tokens), min_pmi)
    if titles:
        sources["title"] = read_titles(titles)
    entries, summary = merge_sources(sources)
    write_metadata(out, entries)
    return {"out": out, "entries": len(entries), "corpus_tokens": tokens, "distinct_unigrams": len(unigrams),
            "distinct_bigrams": len(bigrams), "sources": summary}
