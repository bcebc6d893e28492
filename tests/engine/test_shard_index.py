"""Shards are named by one contiguous index (``00000.tar`` ... with their ``.parquet`` beside),
``shards/sizes.json`` sizes them, and the printed ``--train-data`` string is accepted by
open_clip's own trainer (issue 5 §7: it could not size our shards, and unit-row names could not
be written as a brace range)."""

from __future__ import annotations

import io
import json
import shlex
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from curate.engine.rundir import RunDir
from curate.pipeline import run_pipeline


@pytest.fixture
def captions(tmp_path):
    path = tmp_path / "in.parquet"
    texts = [f"caption {i}" if i % 5 else "no" for i in range(14)]  # rows 0, 5, 10 dropped
    pq.write_table(pa.table({"url": [f"http://x/{i}" for i in range(14)], "caption": texts}), path)
    return path


def _tar_keys(path) -> list[str]:
    with tarfile.open(path) as tar:
        return sorted({member.name.split(".", 1)[0] for member in tar})


def test_shards_have_contiguous_names_sizes_and_an_open_clip_train_data_line(tmp_path, captions, ray_session) -> None:
    from open_clip_train.data import expand_urls, get_dataset_size

    spec = {"name": "idx", "input": {"path": str(captions), "rows_per_unit": 5},
            "stages": [{"stage": "laion_caption"}], "output": {"samples_per_shard": 3}}
    log = io.StringIO()
    result = run_pipeline(spec, output=str(tmp_path / "run"), console=Console(file=log, width=80))
    shards = tmp_path / "run" / "shards"
    # units of 5, 5 and 4 rows keep 4, 4 and 3: two shards each (3 + 1, 3 + 1, 3 + 0)
    names = sorted(p.name for p in shards.iterdir())
    assert names == ["00000.parquet", "00000.tar", "00001.parquet", "00001.tar", "00002.parquet", "00002.tar",
                     "00003.parquet", "00003.tar", "00004.parquet", "00004.tar", "sizes.json"]
    sizes = json.loads((shards / "sizes.json").read_text())
    for index in range(5):
        uids = pq.read_table(shards / f"{index:05d}.parquet").column("uid").to_pylist()
        assert sizes[f"{index:05d}.tar"] == len(uids) and _tar_keys(shards / f"{index:05d}.tar") == sorted(uids)
    assert sorted(sizes.values()) == [1, 1, 3, 3, 3] and result.funnel.kept == 11
    rejects = sorted(p.name for p in (tmp_path / "run" / "rejects").iterdir())
    assert rejects == ["00000-0000000.parquet", "00001-0000005.parquet", "00002-0000010.parquet"]  # named per unit

    assert result.train_data == f"{shards}/{{00000..00004}}.tar"
    line = f"open_clip: --train-data '{shards}/{{00000..00004}}.tar' --train-num-samples 11 --dataset-type webdataset"
    assert line + "\n" in log.getvalue()  # one line, never wrapped
    args = shlex.split(line.removeprefix("open_clip: "))
    train_data = args[args.index("--train-data") + 1]
    assert get_dataset_size(train_data) == (11, 5)
    assert expand_urls(train_data)[0] == [str(shards / f"{i:05d}.tar") for i in range(5)]


def _tmp_files(run: RunDir, names: list[str], text: str = "x") -> list[str]:
    for name in names:
        (run.tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (run.tmp / name).write_text(text)
    return names


def test_indices_are_given_at_commit_and_a_retry_round_appends(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.unit_stats.mkdir(parents=True)
    stats = {"rows": 4, "kept": 3, "drops": {}}
    run.commit(1, _tmp_files(run, ["shards/00001-0000004.tar", "shards/00001-0000004.parquet"]), {"unit": 1, **stats})
    run.commit(0, _tmp_files(run, ["shards/00000-0000000.tar", "shards/00000-0000000.parquet",
                                   "shards/00000-0000002.tar", "shards/00000-0000002.parquet",
                                   "rejects/00000-0000000.parquet"]), {"unit": 0, **stats})
    assert run.read_unit_stats(1)["files"] == {"shards/00000.tar": 1, "shards/00000.parquet": 1}
    assert run.read_unit_stats(0)["files"] == {"shards/00001.tar": 1, "shards/00001.parquet": 1, "shards/00002.tar": 1,
                                               "shards/00002.parquet": 1, "rejects/00000-0000000.parquet": 1}
    # a retry round of unit 0: a new shard takes the next index, the rewritten ledger keeps its name
    run.commit(0, _tmp_files(run, ["shards/00000-r1-0000001.tar", "shards/00000-r1-0000001.parquet",
                                   "rejects/00000-0000000.parquet"], "rewritten"), {"unit": 0, **stats})
    assert run.read_unit_stats(0)["files"] == {"shards/00001.tar": 1, "shards/00001.parquet": 1, "shards/00002.tar": 1,
                                               "shards/00002.parquet": 1, "rejects/00000-0000000.parquet": 9,
                                               "shards/00003.tar": 9, "shards/00003.parquet": 9}
    assert (run.rejects / "00000-0000000.parquet").read_text() == "rewritten"
    # a later driver continues after the highest index in use, and fills a gap first
    (run.unit_stats / "00001.json").unlink()
    later = RunDir(run.root)
    assert later.recover() == [] and not (run.shards / "00000.tar").exists()
    later.commit(1, _tmp_files(later, ["shards/00001-0000004.tar", "shards/00001-0000004.parquet",
                                       "shards/00001-0000007.tar", "shards/00001-0000007.parquet"]), {"unit": 1, **stats})
    assert sorted(later.read_unit_stats(1)["files"]) == ["shards/00000.parquet", "shards/00000.tar",
                                                          "shards/00004.parquet", "shards/00004.tar"]


def test_train_data_joins_ranges_around_gaps_and_width_changes(tmp_path) -> None:
    from open_clip_train.data import expand_urls, get_dataset_size

    run = RunDir(tmp_path / "run")
    run.shards.mkdir(parents=True)
    indices = [0, 1, 2, 4, 99998, 99999, 100000, 100001]
    sizes = {f"{i:05d}.tar": i % 7 + 1 for i in indices}
    (run.shards / "sizes.json").write_text(json.dumps(sizes))
    train_data = run.train_data(sizes)
    assert train_data == "::".join(f"{run.shards}/{part}.tar" for part in
                                   ("{00000..00002}", "00004", "{99998..99999}", "{100000..100001}"))
    assert expand_urls(train_data)[0] == [f"{run.shards}/{i:05d}.tar" for i in indices]
    assert get_dataset_size(train_data) == (sum(sizes.values()), len(indices))
