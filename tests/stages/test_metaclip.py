"""``metaclip_match``: columns, a missing caption, the metadata checked before the run."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from curate.config import load_spec
from curate.errors import ConfigError, InputError
from curate.schema import CAPTION
from curate.stages.base import RunContext
from curate.stages.metaclip import MetaClipMatchParams, MetaClipMatchStage


def _stage(tmp_path, entries: list[str]) -> MetaClipMatchStage:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    stage = MetaClipMatchStage(MetaClipMatchParams(metadata=str(path)))
    stage.bind(RunContext())
    stage.setup()
    return stage


def test_writes_sorted_entry_ids_and_counts(tmp_path) -> None:
    stage = _stage(tmp_path, ["dog", "hot dog", "hot", "cat", "Cat"])
    batch = pa.table({CAPTION: pa.array(["A hot dog, a cat.", None, "Cat", "nothing here"], pa.string())})
    out = stage.process(batch)
    assert out.column("metaclip_entries").type == pa.list_(pa.int32())
    assert out.column("metaclip_entries").to_pylist() == [[0, 1, 2, 3], [], [4], []]
    assert out.column("metaclip_match_count").type == pa.int32()
    assert out.column("metaclip_match_count").to_pylist() == [4, 0, 1, 0]
    assert stage.has_setup  # the automaton is built once per worker: an actor pool


def test_missing_metadata_is_one_line_at_spec_check(tmp_path) -> None:
    spec = {"name": "m", "input": {"path": str(tmp_path / "in.parquet")},
            "stages": [{"stage": "metaclip_match", "metadata": str(tmp_path / "nope.json")}]}
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert str(err.value) == (f"<dict>: stages[0]: no such metadata file {tmp_path / 'nope.json'} (build one "
                              "with `curate metaclip build-metadata`, give MetaCLIP's metadata.json, or add `build:` to "
                              "make it before the run)")


def test_build_makes_a_missing_metadata_file_on_the_driver_before_the_run(tmp_path) -> None:
    """A recipe finds or builds its metadata (issue 7 §5): the file appears at bind, not at spec-check."""
    corpus = tmp_path / "captions.txt"
    corpus.write_text("a red circle\na red square\nthe red circle\n", encoding="utf-8")
    target = tmp_path / "made" / "metadata.tsv"
    spec = {"name": "m", "input": {"path": str(tmp_path / "in.parquet")},
            "stages": [{"stage": "metaclip_match", "metadata": str(target),
                        "build": {"use_wordnet": False, "corpus": [str(corpus)], "min_count": 2}}]}
    _, (stage,) = load_spec(spec)
    assert not target.exists()
    stage.bind(RunContext())
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[:100] == [f"{n}\tnumber" for n in range(100)]
    assert lines[100:] == ["red\tunigram", "a\tunigram", "circle\tunigram"]  # by count, then text
    stage.setup()
    out = stage.process(pa.table({CAPTION: ["A red circle", "blue"]}))
    assert out.column("metaclip_entries").to_pylist() == [[100, 102], []]  # case-sensitive: "A" is not "a"
    stage.bind(RunContext())  # found now: not rebuilt
    assert target.read_text(encoding="utf-8").splitlines() == lines


def test_relative_metadata_path_is_made_absolute(tmp_path, monkeypatch) -> None:
    (tmp_path / "m.tsv").write_text("dog\twordnet\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert MetaClipMatchParams(metadata="m.tsv").metadata == os.path.join(str(tmp_path), "m.tsv")


def test_malformed_metadata_is_one_line_before_the_run(tmp_path) -> None:
    (tmp_path / "m.tsv").write_text("dog\nhot dog\ndog\n", encoding="utf-8")
    stage = MetaClipMatchStage(MetaClipMatchParams(metadata=str(tmp_path / "m.tsv")))
    with pytest.raises(InputError, match=r"m.tsv: entry 'dog' repeats \(ids 0 and 2\); each entry must appear once$"):
        stage.bind(RunContext())
