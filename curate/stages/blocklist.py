"""Caption blocklists: drop captions that contain an entry of a word list (LDNOOBW format).

The rule is C4's bad-words filter (Raffel et al. 2020, §2.2; code: tensorflow/datasets
``text/c4_utils.py``, ``get_badwords_filter_fn``): the caption is lower-cased and an entry
matches where it stands as a whole word, i.e. with a non-word character or the end of the text
on both sides (``(?:\\W|^)entry(?:\\W|$)``), so ``ass`` does not match ``class``; multi-word
entries match as phrases. For the lists of languages written without spaces between words,
``ja``, ``th`` and ``zh``, C4 matches substrings; so does this stage, except for entries made
only of ASCII (``sm``, ``xx``, ``3p`` in ``ja``): C4 applies a language's list only to pages of
that language, this stage applies every list to every caption, where such an entry as a
substring would drop "small" or "xxl".

Differences from C4's regex, on purpose: word characters are letters, marks, digits and ``_``
(Python's ``\\w`` leaves out combining marks, so a Hindi entry followed by a vowel sign would
match inside a longer word); runs of whitespace (newlines, no-break spaces) in the caption count
as one space, so a phrase entry matches across a line break; entries are trimmed, whitespace runs
in them collapsed, and lower-cased like the captions (Arrow's ``utf8_lower``).

Matching is pyahocorasick over the lower-cased captions with the boundary checked per hit:
one automaton per worker built in ``setup``. One RE2 regex over the batch
(``pyarrow.compute.extract_regex``, same boundary classes, same rows matched) is a little
faster for the English list alone (379k vs 314k captions per CPU-second on laion-10k) but
falls to 38k with all 28 LDNOOBW lists (2,663 entries overflow RE2's DFA memory), where the
automaton keeps 153k; C4's Python ``re`` pattern does 65k and 13k (benchmarks/blocklist.py).

Columns: ``blocklist_match`` (the entry, null when none matched) and ``blocklist_list`` (the
list's name). The ledger reason names the list, ``blocklisted_<list>`` (``blocklisted_en``;
non-alphanumerics become ``_``), detail ``entry=<entry>``. The match reported is the leftmost in
the caption, the longest there, and of the first list (in ``languages`` or ``lists`` order).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, model_validator

from curate.errors import UserError
from curate.schema import CAPTION
from curate.stages.base import Decision, Filter, StageParams, append_columns
from curate.stages.registry import register

#: C4 matches these languages' lists as substrings (no spaces between words).
SUBSTRING_LANGUAGES = ("ja", "th", "zh")
#: In a directory of lists, the files named like a language tag (``en``, ``fr-CA-u-sd-caqc``,
#: optionally ``.txt``) are lists; anything else there (``README.md``, ``LICENSE``) is not.
_LIST_FILE = re.compile(r"(?P<name>[a-z]{2,3}(?:-[A-Za-z0-9]+)*)(?:\.txt)?")


class CaptionBlocklistParams(StageParams):
    lists: str | dict[str, str] = Field(
        ..., description="a directory of LDNOOBW-format lists (one file per language, named by its code: en, de, ...), "
                         "or a mapping list name -> file; one entry per line")
    languages: list[str] | None = Field(None, min_length=1,
                                        description="the lists to apply, by name; default: every list given")
    _entries: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_lists(self) -> CaptionBlocklistParams:
        try:
            lists = read_lists(self.lists)
        except UserError as err:
            raise ValueError(f"lists: {err}") from None
        unknown = [name for name in self.languages or () if name not in lists]
        if unknown:
            raise ValueError(f"languages: no list named {unknown[0]!r} (lists: {', '.join(lists)})")
        self._entries = {name: lists[name] for name in self.languages or lists}
        return self

    @property
    def entries(self) -> dict[str, list[str]]:
        """The applied lists, name -> normalised entries (read when the parameters were validated)."""
        return self._entries

    def record(self) -> dict[str, str]:
        """List name -> sha256 of its normalised entries (one per line), for the run manifest: the
        spec names files, so an edited list would otherwise go unnoticed by a resumed run."""
        return {name: hashlib.sha256("\n".join(entries).encode()).hexdigest() for name, entries in self._entries.items()}


def read_lists(lists: str | dict[str, str]) -> dict[str, list[str]]:
    """List name -> its normalised entries, from a directory, one file, or a name -> file mapping."""
    if isinstance(lists, dict):
        return {name: read_list(Path(path)) for name, path in lists.items()}
    root = Path(lists).expanduser()
    if root.is_file():
        return {root.stem: read_list(root)}
    if not root.is_dir():
        raise UserError(f"{lists}: no such file or directory (give a directory of lists or a mapping name: file)")
    files = sorted(p for p in root.iterdir() if p.is_file() and _LIST_FILE.fullmatch(p.name))
    if not files:
        raise UserError(f"{lists}: no list files (lists are files named by their language code: en, de, ...)")
    return {_LIST_FILE.fullmatch(p.name)["name"]: read_list(p) for p in files}


def read_list(path: Path) -> list[str]:
    """One entry per line: trimmed, whitespace runs collapsed, lower-cased as captions are; blank
    lines skipped, repeats dropped (first kept)."""
    try:
        text = path.expanduser().read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (check the path)") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (save the list as UTF-8)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    entries = [" ".join(line.split()) for line in text.splitlines()]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise UserError(f"{path}: holds no entries (one entry per line)")
    return list(dict.fromkeys(pc.utf8_lower(pa.array(entries, pa.string())).to_pylist()))


def reason_for(name: str) -> str:
    """``blocklisted_<list>`` in snake_case: ``fr-CA-u-sd-caqc`` -> ``blocklisted_fr_ca_u_sd_caqc``."""
    return "blocklisted_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def is_word_char(char: str) -> bool:
    """Letters, digits (every numeric), combining marks and ``_``."""
    return char.isalnum() or char == "_" or unicodedata.category(char)[0] == "M"


class BlocklistMatcher:
    """All entries of all lists in one Aho-Corasick automaton; each hit's boundaries checked."""

    def __init__(self, lists: dict[str, list[str]]):
        import ahocorasick  # pyahocorasick; imported where the matcher is built (on the workers)

        self.names = list(lists)
        owners: dict[str, list[tuple[int, bool]]] = {}  # entry -> (list index, substring match?)
        for index, (name, entries) in enumerate(lists.items()):
            substring = name.split("-")[0].lower() in SUBSTRING_LANGUAGES
            for entry in entries:
                owners.setdefault(entry, []).append((index, substring and not entry.isascii()))
        self._automaton = ahocorasick.Automaton()
        for entry, where in owners.items():
            self._automaton.add_word(entry, (entry, tuple(where)))
        self._automaton.make_automaton()

    def first(self, text: str) -> tuple[str, int] | None:
        """(entry, list index) of the leftmost, then longest, match in ``text`` (lower-cased,
        whitespace runs collapsed), or None."""
        best: tuple[int, int, int, str] | None = None  # (start, -length, list index, entry)
        last = len(text) - 1
        for end, (entry, where) in self._automaton.iter(text):
            start = end - len(entry) + 1
            if best is not None and (start, -len(entry)) > best[:2]:
                continue
            whole_word = ((start == 0 or not is_word_char(text[start - 1]))
                          and (end == last or not is_word_char(text[end + 1])))
            index = next((i for i, substring in where if substring or whole_word), None)
            if index is not None:
                best = min(best or (start, -len(entry), index, entry), (start, -len(entry), index, entry))
        return None if best is None else (best[3], best[2])


@register
class CaptionBlocklistFilter(Filter):
    """Drop captions holding an entry of a blocklist (``blocklisted_<list>``, detail ``entry=...``);
    score columns ``blocklist_match`` and ``blocklist_list``. A missing caption counts as empty."""

    kind = "caption_blocklist"
    Params = CaptionBlocklistParams
    reads = (CAPTION,)
    writes = ("blocklist_match", "blocklist_list")

    def content_record(self) -> dict[str, str]:
        return self.params.record()

    def setup(self) -> None:
        self._matcher = BlocklistMatcher(self.params.entries)

    def teardown(self) -> None:
        self._matcher = None

    def process(self, batch: pa.Table) -> pa.Table:
        captions = pc.utf8_lower(pc.fill_null(batch.column(CAPTION), ""))
        # Whitespace runs (newlines, no-break spaces) as one space: phrase entries match across them.
        texts = pc.binary_join(pc.utf8_split_whitespace(captions), " ").to_pylist()
        first, names = self._matcher.first, self._matcher.names
        found = [first(text) for text in texts]
        matched = pa.array([hit[0] if hit else None for hit in found], pa.string())
        listed = pa.array([names[hit[1]] if hit else None for hit in found], pa.string())
        return append_columns(batch, {"blocklist_match": matched, "blocklist_list": listed})

    def decide(self, scored: pa.Table) -> Decision:
        matched = _array(scored.column("blocklist_match"))
        listed = _array(scored.column("blocklist_list"))
        names = pc.unique(listed.drop_null())
        reasons = pa.array([reason_for(name) for name in names.to_pylist()], pa.string())
        reason = pc.take(reasons, pc.index_in(listed, value_set=names))
        detail = pc.binary_join_element_wise("entry=", matched, "")
        return Decision(keep=pc.is_null(matched), reason=reason, detail=detail)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
