"""Shards of a run for the trainer: sample count and brace range from sizes.json, one-line errors."""

from __future__ import annotations

import json

import pytest

from curate.errors import UserError
from curate.train.shards import Pair, expand_shards, read_pairs, run_shards, write_pair_shards


def test_run_shards_reads_sizes_json_and_makes_a_brace_range(run_like, clean_pairs):
    shards = run_shards(run_like / "run")
    root = (run_like / "run" / "shards").resolve()
    assert shards.num_samples == len(clean_pairs) - 40
    assert shards.train_data == f"{root}/{{00000..00002}}.tar"
    assert [f.name for f in shards.files] == ["00000.tar", "00001.tar", "00002.tar"]


def test_names_that_are_not_one_numbered_range_are_listed(tmp_path):
    shards = write_pair_shards(tmp_path / "s", [Pair("k1", b"img", "a cap", {})], 10)
    (tmp_path / "s" / "00000.tar").rename(tmp_path / "s" / "00001-ab12-0000000.tar")
    (tmp_path / "s" / "00000b.tar").write_bytes((tmp_path / "s" / "00001-ab12-0000000.tar").read_bytes())
    (tmp_path / "s" / "sizes.json").write_text(json.dumps({"00001-ab12-0000000.tar": 1, "00000b.tar": 1}))
    shards = run_shards(tmp_path / "s")
    root = (tmp_path / "s").resolve()
    assert shards.train_data == f"{root}/00000b.tar::{root}/00001-ab12-0000000.tar"
    assert shards.num_samples == 2


def test_pairs_round_trip(tmp_path):
    pairs = [Pair(f"{i:04d}", bytes([i]) * 10, f"caption {i}", {"label": i % 2}) for i in range(5)]
    write_pair_shards(tmp_path, pairs, 2)
    back = list(read_pairs(expand_shards(str(tmp_path / "{00000..00002}.tar"))))
    assert [(p.key, p.image, p.caption, p.meta["label"]) for p in back] == [
        (p.key, p.image, p.caption, p.meta["label"]) for p in pairs]
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"00000.tar": 2, "00001.tar": 2, "00002.tar": 1}


def test_a_directory_without_sizes_json_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError) as err:
        run_shards(tmp_path)
    assert str(err.value) == (f"--shards {tmp_path}: no shards/sizes.json there (give the directory of a finished "
                              "`curate run`, which writes shards/*.tar and shards/sizes.json)")


def test_a_missing_listed_shard_is_a_one_line_error(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "sizes.json").write_text('{"00000.tar": 3}')
    with pytest.raises(UserError, match=r"1 shard\(s\) listed in sizes.json are missing, e.g. .*00000.tar$"):
        run_shards(tmp_path)


def test_a_pattern_that_matches_nothing_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError) as err:
        expand_shards(str(tmp_path / "{00000..00001}.tar"))
    assert str(err.value) == (f"--shards {tmp_path}/{{00000..00001}}.tar: {tmp_path}/00000.tar is not a tar shard, "
                              "a run directory or a brace pattern of shards")
