"""The ``curate`` command: user mistakes exit 2 with exactly one ``curate: error:`` line on
stderr and no traceback; ``sample synth`` and ``stats``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import main

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
