"""Planning off the driver (issue 6 §4): line-based files are cut into byte chunks on the driver
and counted on workers; the units (rows and bytes) are exactly those of a whole-file count."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from curate.config import InputSpec
from curate.errors import InputError
from curate.io.plan import plan_inputs
from curate.io.plan_tasks import run_here
from curate.io.readers import plan_units, read_unit


def whole_file_units(path: Path, per_unit: int, header: bool) -> list[tuple]:
    """Units as the driver computed them before issue 6, by reading every line."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    position = data.index(b"\n") + 1 if header else 0
    bounds, rows = [position], 0
    for line in io.BytesIO(data[position:]):
        position += len(line)
        if line.strip():
            rows += 1
            if rows % per_unit == 0:
                bounds.append(position)
    if rows % per_unit:
        bounds.append(position)
    return [(i * per_unit, min(rows, (i + 1) * per_unit), bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def planned(spec: InputSpec, chunk_bytes: int) -> list[tuple]:
    return [(u.start, u.stop, u.byte_start, u.byte_stop) for u in plan_inputs(spec, chunk_bytes).units(run_here)]


def messy_lines(n: int, seed: int) -> list[bytes]:
    """Rows of varied length with empty lines between them, CRLF endings too."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(f"http://h/{i}.jpg,{'word ' * rng.randint(0, 12)}end{i}".encode() + rng.choice([b"\n", b"\r\n"]))
        if rng.random() < 0.2:
            out.append(rng.choice([b"\n", b"\r\n"]))  # empty lines: the CSV parser skips them too
    return out


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 333, 10**9])
@pytest.mark.parametrize("per_unit", [1, 3, 10, 1000])
@pytest.mark.parametrize("tail", [b"", b"\n\n", b"http://h/last.jpg,no newline at the end"])
def test_csv_chunks_give_the_whole_file_units(tmp_path: Path, chunk_bytes: int, per_unit: int, tail: bytes) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"url,caption\r\n" + b"".join(messy_lines(60, seed=per_unit)) + tail)
    spec = InputSpec(path=str(path), rows_per_unit=per_unit)
    assert planned(spec, chunk_bytes) == whole_file_units(path, per_unit, header=True)


@pytest.mark.parametrize("chunk_bytes", [1, 50, 10**9])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_jsonl_chunks_give_the_whole_file_units(tmp_path: Path, chunk_bytes: int, suffix: str) -> None:
    lines = [json.dumps({"url": f"http://h/{i}", "caption": "c" * (i % 9)}).encode() + b"\n" for i in range(41)]
    lines[5:5] = [b"\n", b"   \n"]
    data = b"".join(lines)
    path = tmp_path / f"in{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    spec = InputSpec(path=str(path), rows_per_unit=4)
    assert planned(spec, chunk_bytes) == whole_file_units(path, 4, header=False)


def test_headerless_tsv_chunks(tmp_path: Path) -> None:
    path = tmp_path / "cc.tsv"
    path.write_text("".join(f"caption {i}\thttp://h/{i}.jpg\n" for i in range(30)))
    spec = InputSpec(path=str(path), rows_per_unit=4, header=False, columns=["caption", "url"])
    assert planned(spec, 40) == whole_file_units(path, 4, header=False)


def test_rows_read_from_chunked_units_keep_their_uids(tmp_path: Path) -> None:
    """uids hash the row number within the file: a chunked plan must read the same rows with the same uids."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"url,caption\n" + b"".join(messy_lines(50, seed=3)))
    spec = InputSpec(path=str(path), rows_per_unit=7)
    whole = [read_unit(u, spec).select(["uid", "url", "caption"]) for u in plan_inputs(spec, 10**9).units()]
    chunked = [read_unit(u, spec).select(["uid", "url", "caption"]) for u in plan_inputs(spec, 13).units()]
    assert chunked == whole and sum(t.num_rows for t in whole) == 50


@pytest.mark.parametrize("chunk_bytes", [1, 30, 10**9])
def test_quoted_newlines_across_chunks_make_one_unit(tmp_path: Path, chunk_bytes: int) -> None:
    """A chunk cut inside a quoted value cannot be told from a row on its own: the file is then
    parsed whole on a worker, and is one unit, as when the driver parsed it."""
    path = tmp_path / "quoted.csv"
    rows = [f'http://h/{i}.jpg,plain {i}\n' for i in range(12)]
    rows[6] = 'http://h/6.jpg,"a caption\nover\nthree lines"\n'
    path.write_text("url,caption\n" + "".join(rows))
    spec = InputSpec(path=str(path), rows_per_unit=5)
    size = path.stat().st_size
    assert planned(spec, chunk_bytes) == [(0, 12, len("url,caption\n"), size)]
    [unit] = plan_inputs(spec, chunk_bytes).units()
    assert read_unit(unit, spec).column("caption").to_pylist()[6] == "a caption\nover\nthree lines"


def test_quote_left_open_at_the_end_keeps_line_units(tmp_path: Path) -> None:
    """The parser takes an unterminated quote on the last line as a value to the end; its rows
    still equal its lines, so the file is split as before."""
    path = tmp_path / "open.csv"
    path.write_text("url,caption\n" + "".join(f"http://h/{i},c{i}\n" for i in range(9)) + 'http://h/9,"open\n')
    spec = InputSpec(path=str(path), rows_per_unit=4)
    assert planned(spec, 20) == whole_file_units(path, 4, header=True)


@pytest.mark.parametrize("chunk_bytes", [16, 10**9])
def test_malformed_row_deep_in_the_file_is_the_same_one_line_error(tmp_path: Path, chunk_bytes: int) -> None:
    path = tmp_path / "ragged.csv"
    rows = [f"http://h/{i}.jpg,row {i}\n" for i in range(40)]
    rows[33] = "http://h/33.jpg\n"
    path.write_text("url,caption\n" + "".join(rows))
    spec = InputSpec(path=str(path), rows_per_unit=10)
    plan = plan_inputs(spec, chunk_bytes)  # the driver reads the first line only: no error yet
    with pytest.raises(InputError) as info:
        plan.units(run_here)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable CSV file (CSV parse error: ")
    assert "Expected 2 columns, got 1: http://h/33.jpg" in message
    assert message.endswith("fix the row, or remove the file from input.path") and "\n" not in message


def test_header_errors_stay_on_the_driver(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("URL,TEXT\nu,c\n")
    with pytest.raises(InputError, match="missing column 'url'"):
        plan_inputs(InputSpec(path=str(path)))


def test_units_are_numbered_across_formats_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("url,caption\n" + "".join(f"u{i},c\n" for i in range(5)))
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        for i in range(3):
            info = tarfile.TarInfo(f"{i:03d}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"c"))
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"url": f"j{i}", "caption": "c"}) + "\n" for i in range(4)))
    units = plan_units(InputSpec(path=str(tmp_path), rows_per_unit=2))
    assert [(Path(u.path).name, u.index, u.start, u.stop) for u in units] == [
        ("a.csv", 0, 0, 2), ("a.csv", 1, 2, 4), ("a.csv", 2, 4, 5),
        ("b.tar", 3, 0, 2), ("b.tar", 4, 2, 3),
        ("c.jsonl", 5, 0, 2), ("c.jsonl", 6, 2, 4),
    ]


def _bytes_read() -> int:
    """Bytes this process has passed to read(2) and friends (files; Ray's sockets use recvmsg)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_the_driver_does_not_read_the_inputs(tmp_path: Path, ray_session) -> None:
    """Before: the driver read every csv/jsonl line and parsed the whole csv (twice the file's
    bytes), and listed every tar header. Now it reads first lines and one line per chunk cut;
    the rows are counted by Ray tasks."""
    from curate.engine.ray_runtime import on_workers

    row = b"http://example.com/some/long/path/image.jpg,a caption of a few words here\n"
    (tmp_path / "big.csv").write_bytes(b"url,caption\n" + row * 150_000)  # 11 MB
    records = (json.dumps({"url": f"u{i}", "caption": "c" * 60}).encode() + b"\n" for i in range(100_000))
    (tmp_path / "big.jsonl").write_bytes(b"".join(records))  # 8.3 MB
    with tarfile.open(tmp_path / "big.tar", "w") as tar:
        for i in range(2_000):
            info = tarfile.TarInfo(f"{i:05d}.txt")
            info.size = 1000
            tar.addfile(info, io.BytesIO(b"x" * 1000))
    spec = InputSpec(path=str(tmp_path), rows_per_unit=10_000)
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    on_workers([(run_here, ([],))])  # the first remote call imports Ray's task machinery (~0.6 MB of modules)
    before = _bytes_read()
    plan = plan_inputs(spec, chunk_bytes=2 * 1024 * 1024)
    units = plan.units(on_workers)
    driver_read = _bytes_read() - before
    assert driver_read < total / 50, f"the driver read {driver_read} bytes of {total}"
    assert [(u.start, u.stop, u.byte_start, u.byte_stop) for u in units] == [
        (u.start, u.stop, u.byte_start, u.byte_stop) for u in plan_inputs(spec, 10**12).units(run_here)]
    assert sum(u.size for u in units) == 150_000 + 100_000 + 2_000


def test_a_workers_input_error_is_its_one_line(tmp_path: Path, ray_session) -> None:
    from curate.engine.ray_runtime import on_workers

    path = tmp_path / "ragged.csv"
    path.write_text("url,caption\nu0,c\nu1\nu2,c\n")
    with pytest.raises(InputError) as info:
        plan_units(InputSpec(path=str(path)), on_workers)
    assert type(info.value) is InputError
    assert str(info.value).startswith(f"{path}: not a readable CSV file (CSV parse error: ")
    assert "Expected 2 columns, got 1" in str(info.value) and "\n" not in str(info.value)
