"""caption_blocklist (curate.stages.blocklist): C4's whole-word rule, phrases, case, the
substring rule of ja/th/zh, reasons naming the list, spec-check errors, and the automaton
against the naive definition (hypothesis)."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.config import load_spec
from curate.errors import ConfigError
from curate.stages.blocklist import BlocklistMatcher, CaptionBlocklistFilter, CaptionBlocklistParams, reason_for


def write_lists(root: Path, lists: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in lists.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    return write_lists(tmp_path / "lists", {
        "en": "ass\n2 girls 1 cup\n  Ball   Gag  \n\na$$\nass\n",
        "de": "arsch\nass\n",
        "ja": "sm\nアナル\n",
        "zh": "乳\n",
        "fr-CA-u-sd-caqc": "câlice\n",
        "README.md": "not a list\n",
        "LICENSE": "not a list either\n",
    })


def stage(lists, **params) -> CaptionBlocklistFilter:
    built = CaptionBlocklistFilter(CaptionBlocklistParams(lists=lists, **params))
    built.setup()
    return built


def run(filt: CaptionBlocklistFilter, captions: list[str | None]):
    batch = pa.table({"uid": [f"{i:032x}" for i in range(len(captions))], "caption": pa.array(captions, pa.string())})
    scored = filt.process(batch)
    assert scored.column("uid").to_pylist() == batch.column("uid").to_pylist()
    decision = filt.decide(scored)
    return scored, list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def test_directory_lists_are_the_files_named_by_language(lists_dir: Path) -> None:
    params = CaptionBlocklistParams(lists=str(lists_dir))
    assert params.entries == {  # sorted by name; README.md and LICENSE are not lists; entries normalised
        "de": ["arsch", "ass"], "en": ["ass", "2 girls 1 cup", "ball gag", "a$$"], "fr-CA-u-sd-caqc": ["câlice"],
        "ja": ["sm", "アナル"], "zh": ["乳"],
    }
    assert params.model_dump() == {"lists": str(lists_dir), "languages": None}  # the spec keeps the path
    assert params.record()["en"] == hashlib.sha256(b"ass\n2 girls 1 cup\nball gag\na$$").hexdigest()
    assert list(params.record()) == ["de", "en", "fr-CA-u-sd-caqc", "ja", "zh"]


def test_whole_words_only_case_insensitive(lists_dir: Path) -> None:
    _, verdicts = run(stage(str(lists_dir), languages=["en"]), [
        "a class act", "Nice ASS!", "assassin", "bad-ass day", "ass", "glass_ass", "ass2", "passé", None, "",
    ])
    assert verdicts == [
        (True, None, None),                              # "ass" inside "class"
        (False, "blocklisted_en", "entry=ass"),          # upper case, punctuation after
        (True, None, None),                              # prefix of a longer word
        (False, "blocklisted_en", "entry=ass"),          # a hyphen is not a word character
        (False, "blocklisted_en", "entry=ass"),          # the whole caption
        (True, None, None),                              # "_" is a word character
        (True, None, None),                              # so is a digit
        (True, None, None),
        (True, None, None),                              # missing caption: empty, kept
        (True, None, None),
    ]


def test_multi_word_entries_match_as_phrases(lists_dir: Path) -> None:
    scored, verdicts = run(stage(str(lists_dir), languages=["en"]), [
        "2 girls 1 cup", "two girls 1 cup", "see 2 Girls\n1  cup!", "a ball\u00a0gag", "ballgag", "22 girls 1 cup",
        "pay a$$ now", "a$$es",
    ])
    assert [v[2] for v in verdicts] == [
        "entry=2 girls 1 cup", None, "entry=2 girls 1 cup", "entry=ball gag", None, None, "entry=a$$", None,
    ]
    assert scored.column("blocklist_match").to_pylist()[2] == "2 girls 1 cup"
    assert scored.column("blocklist_list").to_pylist()[:2] == ["en", None]


def test_marks_belong_to_words(tmp_path: Path) -> None:
    """A vowel sign (a combining mark) continues a Devanagari word: C4's Python \\W would not."""
    lists = write_lists(tmp_path / "l", {"hi": "कर\n"})
    _, verdicts = run(stage(str(lists)), ["करो", "कर रहा", "e\u0301ass"])
    assert [v[0] for v in verdicts] == [True, False, True]


def test_no_space_languages_match_substrings_except_ascii_entries(lists_dir: Path) -> None:
    _, verdicts = run(stage(str(lists_dir), languages=["ja", "zh"]), [
        "これはアナルです", "乳酪のケーキ", "a small dog", "SM play", "smサイズ",
    ])
    assert verdicts == [
        (False, "blocklisted_ja", "entry=アナル"),   # C4: no word boundaries in ja/th/zh
        (False, "blocklisted_zh", "entry=乳"),
        (True, None, None),                          # ASCII entries keep their boundaries ...
        (False, "blocklisted_ja", "entry=sm"),       # ... and match as whole words
        (True, None, None),
    ]


def test_reason_names_the_list(lists_dir: Path) -> None:
    _, verdicts = run(stage(str(lists_dir)), ["du arsch", "câlice!", "ass"])
    assert verdicts == [(False, "blocklisted_de", "entry=arsch"),
                        (False, "blocklisted_fr_ca_u_sd_caqc", "entry=câlice"),
                        (False, "blocklisted_de", "entry=ass")]  # in de and en: the first list (sorted names)
    assert reason_for("fr-CA-u-sd-caqc") == "blocklisted_fr_ca_u_sd_caqc"


def test_leftmost_then_longest_then_first_list(tmp_path: Path) -> None:
    lists = {"b": str(write_lists(tmp_path, {"b.txt": "cup\nball\n"}) / "b.txt"),
             "a": str(write_lists(tmp_path, {"a.txt": "ball gag\nball\n"}) / "a.txt")}
    _, verdicts = run(stage(lists), ["cup and ball gag", "ball gag and cup", "ball"])
    assert verdicts == [(False, "blocklisted_b", "entry=cup"),      # leftmost
                        (False, "blocklisted_a", "entry=ball gag"),  # longest at one place
                        (False, "blocklisted_b", "entry=ball")]      # first list in the mapping's order


def test_languages_choose_the_lists(lists_dir: Path) -> None:
    _, verdicts = run(stage(str(lists_dir), languages=["de"]), ["nice ass", "2 girls 1 cup"])
    assert verdicts == [(False, "blocklisted_de", "entry=ass"), (True, None, None)]


def spec_error(params: dict) -> str:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": "in.parquet"}, "stages": [{"stage": "caption_blocklist", **params}]})
    return str(err.value)


def test_bad_lists_fail_at_spec_check(tmp_path: Path, lists_dir: Path) -> None:
    assert spec_error({"lists": str(tmp_path / "nope")}) == (
        f"<dict>: stages[0]: lists: {tmp_path / 'nope'}: no such file or directory "
        "(give a directory of lists or a mapping name: file)")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "README.md").write_text("x")
    assert spec_error({"lists": str(empty_dir)}) == (
        f"<dict>: stages[0]: lists: {empty_dir}: no list files (lists are files named by their language code: en, de, ...)")
    assert spec_error({"lists": {"en": str(tmp_path / "en.txt")}}) == (
        f"<dict>: stages[0]: lists: {tmp_path / 'en.txt'}: no such file (check the path)")
    latin1 = tmp_path / "latin1"
    latin1.write_bytes("câlice\n".encode("latin-1"))
    assert spec_error({"lists": {"fr": str(latin1)}}) == (
        f"<dict>: stages[0]: lists: {latin1}: not UTF-8 text (save the list as UTF-8)")
    blank = tmp_path / "blank"
    blank.write_text("\n  \n")
    assert spec_error({"lists": {"x": str(blank)}}) == f"<dict>: stages[0]: lists: {blank}: holds no entries (one entry per line)"
    assert spec_error({"lists": str(lists_dir), "languages": ["en", "pt"]}) == (
        "<dict>: stages[0]: languages: no list named 'pt' (lists: de, en, fr-CA-u-sd-caqc, ja, zh)")
    assert spec_error({}) == "<dict>: stages[0].lists: required key is missing (add it)"


def test_params_survive_pickling_to_workers(lists_dir: Path) -> None:
    import pickle

    filt = CaptionBlocklistFilter(CaptionBlocklistParams(lists=str(lists_dir), languages=["en"]))
    copy = pickle.loads(pickle.dumps(filt))
    copy.setup()
    assert copy.params.entries == {"en": ["ass", "2 girls 1 cup", "ball gag", "a$$"]}
    assert run(copy, ["ass"])[1] == [(False, "blocklisted_en", "entry=ass")]


# The definition, naively: every occurrence of every entry, its boundaries checked one by one.
def _word(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN" or char == "_"


def naive_first(lists: dict[str, list[str]], text: str) -> tuple[str, int] | None:
    hits = []
    for index, (name, entries) in enumerate(lists.items()):
        for entry in entries:
            substring = name in ("ja", "th", "zh") and not entry.isascii()
            start = text.find(entry)
            while start >= 0:
                end = start + len(entry)
                if substring or ((start == 0 or not _word(text[start - 1])) and (end == len(text) or not _word(text[end]))):
                    hits.append((start, -len(entry), index, entry))
                start = text.find(entry, start + 1)
    if not hits:
        return None
    best = min(hits)
    return best[3], best[2]


ALPHABET = "ab ab-_.!é\u0301ア乳1"
entries = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4).map(lambda e: " ".join(e.split())).filter(bool),
                   min_size=1, max_size=6, unique=True)


@settings(max_examples=400, deadline=None)
@given(en=entries, ja=entries, text=st.text(alphabet=ALPHABET + "bb ", max_size=30))
def test_automaton_equals_the_naive_definition(en: list[str], ja: list[str], text: str) -> None:
    lists = {"en": en, "ja": ja}
    text = " ".join(text.split())  # as process() gives it: whitespace runs collapsed
    assert BlocklistMatcher(lists).first(text) == naive_first(lists, text)


@pytest.mark.shared_data
def test_ldnoobw_lists(shared_data: Path) -> None:
    params = CaptionBlocklistParams(lists=str(shared_data / "blocklists"))
    assert len(params.entries) == 28 and "LICENSE" not in params.entries and "README" not in params.entries
    assert {"en", "ja", "zh", "th", "fr-CA-u-sd-caqc"} <= set(params.entries)
    assert "2 girls 1 cup" in params.entries["en"]
    filt = stage(str(shared_data / "blocklists"), languages=["en"])
    _, verdicts = run(filt, ["A first-class classic", "2 girls 1 cup video", "Anal"])
    assert verdicts == [(True, None, None), (False, "blocklisted_en", "entry=2 girls 1 cup"),
                        (False, "blocklisted_en", "entry=anal")]
