"""The ``curate`` command: user mistakes exit 2 with exactly one ``curate: error:`` line on
stderr and no traceback; ``sample synth`` and ``stats``."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from rich.console import Console

from curate.cli import main
from curate.pipeline import run_pipeline

CURATE = Path(sys.executable).parent / "curate"


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("curate: error: "), err
    assert "Traceback" not in err
    return lines[0]


def write_pipeline(tmp_path: Path, input_path: Path, extra: str = "") -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(f"name: t\ninput:\n  path: {input_path}\nstages:\n  - stage: laion_caption\n{extra}")
    return path


@pytest.fixture
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ninput:\n  path: [unclosed\n")
    return path


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_bad_yaml(capsys, tmp_path: Path, bad_yaml: Path) -> None:
    code, out, err = run_main(capsys, ["run", str(bad_yaml), "--output", str(tmp_path / "run")])
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"curate: error: {bad_yaml}: line ") and "invalid YAML" in line
    assert not (tmp_path / "run").exists()


def test_run_missing_column(capsys, tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": ["http://h/1.jpg"], "text": ["a caption"]}), data)
    code, _, err = run_main(capsys, ["run", str(write_pipeline(tmp_path, data)), "--output", str(tmp_path / "run")])
    assert code == 2
    line = one_error_line(err)
    assert f"{data}: missing column 'caption'" in line and "input.caption_column" in line


def test_run_missing_input_file(capsys, tmp_path: Path) -> None:
    data = tmp_path / "nope.parquet"
    code, _, err = run_main(capsys, ["run", str(write_pipeline(tmp_path, data)), "--output", str(tmp_path / "run")])
    assert code == 2
    assert repr(str(data)) in one_error_line(err) and "does not exist" in err


def test_run_missing_pipeline_file(capsys, tmp_path: Path) -> None:
    code, _, err = run_main(capsys, ["run", str(tmp_path / "nope.yaml")])
    assert code == 2 and "no such pipeline file" in one_error_line(err)


def test_run_bad_override(capsys, tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": ["u"], "caption": ["c"]}), data)
    pipeline = write_pipeline(tmp_path, data)
    code, _, err = run_main(capsys, ["run", str(pipeline), "--set", "stages.0.min_chars=lots"])
    assert code == 2 and "stages[0].min_chars" in one_error_line(err)
    code, _, err = run_main(capsys, ["run", str(pipeline), "--set", "stages.0.min_charz=1"])
    assert code == 2 and "unknown key (valid: min_chars)" in one_error_line(err)


def test_stats_on_a_non_run_directory(capsys, tmp_path: Path) -> None:
    code, _, err = run_main(capsys, ["stats", str(tmp_path)])
    assert code == 2
    assert one_error_line(err) == f"curate: error: {tmp_path}: not a curate run directory (no manifest.json)"


def test_sample_synth_writes_a_corpus(capsys, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    code, _, err = run_main(capsys, ["sample", "synth", "--out", str(out), "--n", "20", "--seed", "1"])
    assert code == 0
    table = pq.read_table(out / "samples.parquet")
    assert table.num_rows == 20 and {"url", "caption", "noise"} <= set(table.column_names)
    assert (out / "images").is_dir() and any((out / "images").iterdir())
    assert "wrote 20 samples" in err


def test_sample_synth_rejects_bad_n(capsys, tmp_path: Path) -> None:
    code, _, err = run_main(capsys, ["sample", "synth", "--out", str(tmp_path), "--n", "0"])
    assert code == 2 and one_error_line(err) == "curate: error: --n must be positive"


def test_subprocess_bad_yaml_exits_2_with_one_line(tmp_path: Path, bad_yaml: Path) -> None:
    assert CURATE.is_file(), CURATE
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = subprocess.run([str(CURATE), "run", str(bad_yaml), "--output", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "invalid YAML" in one_error_line(result.stderr)


def test_subprocess_stats_on_a_non_run_directory(tmp_path: Path) -> None:
    result = subprocess.run([str(CURATE), "stats", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "not a curate run directory" in one_error_line(result.stderr)


def _caption_run(tmp_path: Path) -> Path:
    """A finished run of 3 units (2, 2 and 1 rows; 3 of the 5 captions kept)."""
    from curate.pipeline import run_pipeline

    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": [f"http://h/{i}" for i in range(5)], "caption": ["a cat", "no", "a dog", "ok", "birds"]}),
                   data)
    spec = {"name": "st", "input": {"path": str(data), "rows_per_unit": 2}, "stages": [{"stage": "laion_caption"}]}
    return run_pipeline(spec, output=str(tmp_path / "run")).run_dir


def test_stats_of_an_interrupted_or_running_run_say_so(capsys, tmp_path: Path, ray_session) -> None:
    """`curate stats` printed an interrupted run as if it were complete (issue 5 §7)."""
    from curate.engine.rundir import RunDir

    run = _caption_run(tmp_path)
    code, out, _ = run_main(capsys, ["stats", str(run), "--json"])
    assert code == 0 and json.loads(out)["state"] == "complete" and json.loads(out)["units_total"] == 3
    code, out, _ = run_main(capsys, ["stats", str(run)])
    assert "run incomplete" not in out

    (run / "stats" / "units" / "00002.json").unlink()  # what a kill before unit 2's commit leaves
    RunDir(run).update_manifest(state="running")
    code, out, _ = run_main(capsys, ["stats", str(run), "--json"])
    stats = json.loads(out)
    assert code == 0 and (stats["state"], stats["units"], stats["units_total"], stats["rows"], stats["kept"]) == (
        "interrupted", 2, 3, 4, 2)
    code, out, _ = run_main(capsys, ["stats", str(run)])
    assert "run incomplete: interrupted; 2 of 3 units done (rerun the same `curate run` to finish it)\n" in out

    from curate.engine.lock import RunLock

    with RunLock(run):
        holder = json.loads((run / "curate.lock").read_text())
        code, out, _ = run_main(capsys, ["stats", str(run)])
        assert (f"run incomplete: still running (host {holder['host']}, pid {os.getpid()}, since {holder['since']}); "
                "2 of 3 units done\n") in out
        code, out, _ = run_main(capsys, ["stats", str(run), "--json"])
        assert json.loads(out)["state"] == "running"


@pytest.mark.slow
def test_a_second_run_on_the_same_output_exits_2_naming_the_first(tmp_path: Path, synth_corpus: Path, ray_session) -> None:
    """Two `curate run` on one --output lost ~390 kept samples and broke every later rerun
    (issue 5 §3). The second now exits 2 with one line naming the first, which finishes intact."""
    spec = {"name": "twice", "input": {"path": str(synth_corpus / "samples.parquet"), "serve": str(synth_corpus),
                                       "rows_per_unit": 10},
            "stages": [{"stage": "datacomp_caption"}, {"stage": "download", "timeout": 20, "threads": 1}],
            "output": {"samples_per_shard": 7, "image_size": 32}, "resources": {"cpus": 2}}
    pipeline, out = tmp_path / "twice.yaml", tmp_path / "run"
    pipeline.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "curate.cli", "run", str(pipeline), "--output", str(out)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None and not (out / "manifest.json").exists():
            time.sleep(0.05)
        assert first.poll() is None and (out / "manifest.json").exists(), "the first run did not start"
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 2 and second.stdout == "", second.stderr
        assert first.poll() is None, "the first run ended before the second could meet it"
        holder = json.loads((out / "curate.lock").read_text())
        assert one_error_line(second.stderr) == (
            f"curate: error: {out}: in use by another curate run (host {socket.gethostname()}, pid {first.pid}, "
            f"since {holder['since']}); wait for it to finish or choose another --output")
        output, _ = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, output
    stats = json.loads((out / "stats" / "stats.json").read_text())
    assert stats["rows"] == 300 and stats["state"] == "complete"
    sizes = json.loads((out / "shards" / "sizes.json").read_text())
    assert len(np.load(out / "uids.npy")) == stats["kept"] == sum(sizes.values())
    said = io.StringIO()  # the rerun in this process: one Ray start-up less
    again = run_pipeline(str(pipeline), output=str(out), console=Console(file=said))
    assert again.units_run == 0 and "30 of 30 units already complete" in " ".join(said.getvalue().split())
