"""`curate train clip` runs open_clip's own trainer on a run's shards (sample count from
sizes.json), checkpoints land under --output and the loss falls; `curate eval clip` reads the
checkpoint back; a bad --shards is one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import re
import sys

from rich.console import Console

from curate.errors import UserError
from curate.train.cli import add_parsers, dispatch
from curate.train.clip import logged_losses


def curate(argv: list[str]) -> int:
    """`curate ARGV` through train/cli.py's parsers and dispatch, with curate.cli's error handling."""
    parser = argparse.ArgumentParser(prog="curate")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    try:
        return dispatch(parser.parse_args(argv), Console(stderr=True))
    except UserError as err:
        print(f"curate: error: {err}", file=sys.stderr)
        return err.exit_code


def test_one_epoch_on_a_run_lowers_the_loss_and_checkpoints_under_output(run_like, clean_pairs, tmp_path, capsys):
    out = tmp_path / "clip"
    status = curate(["train", "clip", "--shards", str(run_like / "run"), "--model", "curate-tiny-clip", "--epochs", "1",
                     "--batch-size", "16", "--lr", "0.002", "--output", str(out), "--", "--save-frequency", "1"])
    assert status == 0
    assert (out / "checkpoints" / "epoch_1.pt").is_file()
    params = (out / "params.txt").read_text()
    assert f"train_num_samples: {len(clean_pairs) - 40}\n" in params  # from sizes.json
    assert "dataset_type: webdataset\n" in params
    losses = logged_losses(out)
    batches = -(-(len(clean_pairs) - 40) // 16)
    assert len(losses) == 2 * -(-batches // 2)  # open_clip rounds batches up to a multiple of the 2 loader workers
    # one epoch of ~200 pairs (measured: 2.91 2.80 2.84 ... 2.78 2.76 2.78, batch 16: chance is ln 16 = 2.77)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses

    capsys.readouterr()
    status = curate(["eval", "clip", "--model", "curate-tiny-clip", "--pretrained", str(out / "checkpoints" / "epoch_1.pt"),
                     "--shards", str(run_like / "heldout" / "00000.tar")])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 40 and result["model"] == "curate-tiny-clip"
    assert set(result["image_to_text"]) == {"R@1", "R@5"}


def test_an_existing_output_is_refused(run_like, tmp_path, capsys):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "out.log").write_text("")
    status = curate(["train", "clip", "--shards", str(run_like / "run"), "--output", str(tmp_path / "clip")])
    assert status == 2
    err = capsys.readouterr().err
    assert err == (f"curate: error: --output {tmp_path / 'clip'}: already holds a training run (choose another "
                   "--output, or pass `-- --resume latest` to continue it)\n")


def test_a_bad_shards_directory_is_one_line_and_exit_2(tmp_path, capsys):
    status = curate(["train", "clip", "--shards", str(tmp_path / "nope")])
    assert status == 2
    err = capsys.readouterr().err
    assert err == (f"curate: error: --shards {tmp_path / 'nope'}: no shards/sizes.json there (give the directory of "
                   "a finished `curate run`, which writes shards/*.tar and shards/sizes.json)\n")


def test_an_unknown_model_is_one_line(run_like, capsys):
    assert curate(["train", "clip", "--shards", str(run_like / "run"), "--model", "no-such-model"]) == 2
    assert re.fullmatch(r"curate: error: --model no-such-model: not an open_clip model config .*\n",
                        capsys.readouterr().err)


def test_more_gpus_than_shards_is_refused(run_like, capsys):
    assert curate(["train", "clip", "--shards", str(run_like / "run"), "--device", "cuda", "--gpus", "4"]) == 2
    assert "--gpus 4: the run has 3 shard(s)" in capsys.readouterr().err
