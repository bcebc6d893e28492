"""Input readers (curate.io.readers): every format split into work units with exact
boundaries; stable uids; kept columns; each bad input with its documented error."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from curate.config import InputSpec
from curate.errors import InputError, UserError
from curate.io.readers import READ_STAGE, Unit, expand_paths, plan_units, read_unit
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UID, UNIT, compute_uids

N = 7
URLS = [f"http://example.com/img/{i}.jpg" for i in range(N)]
CAPTIONS = [f"caption number {i}, with a comma" for i in range(N)]
LICENSES = [f"cc-by-{i}" for i in range(N)]


def expected_uids(path) -> list[str]:
    """One uid per row: normalised URL, caption, the file's absolute path and the row index."""
    return compute_uids(pa.array(URLS), pa.array(CAPTIONS), os.path.abspath(path), 0).to_pylist()


def spec(path, rows_per_unit: int = 3, **kwargs) -> InputSpec:
    return InputSpec(path=str(path) if not isinstance(path, list) else [str(p) for p in path], rows_per_unit=rows_per_unit,
                     **kwargs)


def read_all(input_spec: InputSpec) -> tuple[list[Unit], list[pa.Table]]:
    units = plan_units(input_spec)
    return units, [read_unit(u, input_spec) for u in units]


# -- writers of tiny inputs -------------------------------------------------------------


def write_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"url": URLS, "caption": CAPTIONS, "license": LICENSES}), path, row_group_size=2)
    return path


def write_delimited(path: Path, delimiter: str) -> Path:
    pacsv.write_csv(pa.table({"url": URLS, "caption": CAPTIONS, "license": LICENSES}), path,
                    write_options=pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed"))
    return path


def jsonl_bytes(blank_lines: bool = False) -> bytes:
    lines = []
    for i in range(N):
        lines.append(json.dumps({"url": URLS[i], "caption": CAPTIONS[i], "license": LICENSES[i], "n": i}))
        if blank_lines and i == 2:
            lines.append("")
    return ("\n".join(lines) + "\n").encode()


def write_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(N):
            key = f"shard/{i:05d}"
            members = {
                "jpg": b"\xff\xd8fake-jpeg-%d\xff\xd9" % i,
                "txt": CAPTIONS[i].encode(),
                "json": json.dumps({"url": URLS[i], "license": LICENSES[i]}).encode(),
            }
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


FORMATS = {
    "parquet": lambda d: write_parquet(d / "in.parquet"),
    "csv": lambda d: write_delimited(d / "in.csv", ","),
    "tsv": lambda d: write_delimited(d / "in.tsv", "\t"),
    "jsonl": lambda d: (d / "in.jsonl").write_bytes(jsonl_bytes()) and d / "in.jsonl",
    "jsonl_blank_lines": lambda d: (d / "in.jsonl").write_bytes(jsonl_bytes(blank_lines=True)) and d / "in.jsonl",
    "jsonl.gz": lambda d: (d / "in.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes())) and d / "in.jsonl.gz",
    "webdataset": lambda d: write_tar(d / "in.tar"),
}
FORMAT_NAME = {"jsonl_blank_lines": "jsonl", "jsonl.gz": "jsonl"}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(("rows_per_unit", "bounds"), [
    (3, [(0, 3), (3, 6), (6, 7)]),
    (2, [(0, 2), (2, 4), (4, 6), (6, 7)]),
    (7, [(0, 7)]),
    (100, [(0, 7)]),
])
def test_units_rows_and_uids(tmp_path: Path, fmt: str, rows_per_unit: int, bounds) -> None:
    path = FORMATS[fmt](tmp_path)
    input_spec = spec(path, rows_per_unit, keep_columns=["license"])
    units, tables = read_all(input_spec)
    assert [(u.index, u.start, u.stop, u.size) for u in units] == [(i, a, b, b - a) for i, (a, b) in enumerate(bounds)]
    assert {u.format for u in units} == {FORMAT_NAME.get(fmt, fmt)}
    assert {u.path for u in units} == {os.path.abspath(path)}
    for unit, table in zip(units, tables, strict=True):
        rows = range(unit.start, unit.stop)
        assert table.num_rows == unit.size
        assert table.column("url").to_pylist() == [URLS[i] for i in rows]
        assert table.column("caption").to_pylist() == [CAPTIONS[i] for i in rows]
        assert table.column("license").to_pylist() == [LICENSES[i] for i in rows]
        assert table.column(UID).to_pylist() == [expected_uids(path)[i] for i in rows]
        assert table.column(UNIT).to_pylist() == [unit.index] * unit.size
        assert table.column(ROW).to_pylist() == list(rows)
        for name in (DROP_STAGE, DROP_REASON, DROP_DETAIL):
            assert table.column(name).null_count == unit.size
        if fmt == "webdataset":
            assert table.column("image").to_pylist() == [b"\xff\xd8fake-jpeg-%d\xff\xd9" % i for i in rows]
        else:
            assert "image" not in table.column_names
        assert "n" not in table.column_names  # only the asked-for columns travel


def test_column_order_and_bookkeeping_types(tmp_path: Path) -> None:
    table = read_all(spec(write_parquet(tmp_path / "in.parquet"), keep_columns=["license"]))[1][0]
    assert table.column_names == [UID, "url", "caption", "license", UNIT, ROW, DROP_STAGE, DROP_REASON, DROP_DETAIL]
    assert table.schema.field(UNIT).type == pa.int32() and table.schema.field(ROW).type == pa.int32()


def test_custom_column_names(tmp_path: Path) -> None:
    path = tmp_path / "laion.parquet"
    pq.write_table(pa.table({"URL": URLS, "TEXT": CAPTIONS, "similarity": [0.3] * N}), path)
    units, tables = read_all(spec(path, 4, url_column="URL", caption_column="TEXT", keep_columns=["similarity"]))
    table = pa.concat_tables(tables)
    assert table.column("url").to_pylist() == URLS and table.column("caption").to_pylist() == CAPTIONS
    assert table.column("similarity").to_pylist() == [0.3] * N
    assert table.column(UID).to_pylist() == expected_uids(path)


def test_several_files_number_units_globally(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes())
    (tmp_path / "notes.md").write_text("ignored")
    units = plan_units(spec(tmp_path, 5))  # a directory: its supported files, sorted
    assert [(u.index, Path(u.path).name, u.start, u.stop) for u in units] == [
        (0, "a.parquet", 0, 5), (1, "a.parquet", 5, 7), (2, "b.jsonl", 0, 5), (3, "b.jsonl", 5, 7),
    ]
    assert [Path(p).name for p in expand_paths(spec(str(tmp_path / "*.jsonl")))] == ["b.jsonl"]
    listed = expand_paths(spec([tmp_path / "b.jsonl", tmp_path / "a.parquet"]))
    assert [Path(p).name for p in listed] == ["b.jsonl", "a.parquet"]


def uid(url: str, caption: str | None, source: str = "in.parquet", row: int = 0) -> str:
    return compute_uids(pa.array([url], pa.string()), pa.array([caption], pa.string()), source, row)[0].as_py()


def test_uid_stability() -> None:
    base = uid("http://a.com/x.jpg", "a cat")
    assert re.fullmatch(r"[0-9a-f]{32}", base)
    # same normalised url + caption at the same place in the input: same uid, every time
    assert uid("http://a.com/x.jpg", "a cat") == base
    assert uid("HTTP://A.com/x.jpg#top ", "a cat") == base
    # another caption, path, file or row: another uid (a repeated row has its own uid)
    others = [uid("http://a.com/x.jpg", "a dog"), uid("http://a.com/X.jpg", "a cat"),
              uid("http://a.com/x.jpg", "a cat", source="other.parquet"), uid("http://a.com/x.jpg", "a cat", row=1)]
    assert len({base, *others}) == 5
    # the row index counts from first_row
    pair = compute_uids(pa.array(["u", "u"]), pa.array(["c", "c"]), "f", 10).to_pylist()
    assert pair == [uid("u", "c", "f", 10), uid("u", "c", "f", 11)] and pair[0] != pair[1]
    # a missing caption hashes as the empty caption
    assert uid("u", None) == uid("u", "")


def test_uids_do_not_depend_on_unit_size(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "in.parquet")
    small_units = pa.concat_tables(read_all(spec(path, 2))[1])
    one_unit = pa.concat_tables(read_all(spec(path, 50))[1])
    assert small_units.column(UID).to_pylist() == one_unit.column(UID).to_pylist() == expected_uids(path)
    assert len(set(expected_uids(path))) == N


def test_same_base_name_in_two_folders_gives_distinct_uids(tmp_path: Path) -> None:
    """Issue 5 §6: two files with one base name and identical rows shared all their uids (the
    uid hashed the base name); the file's identity is now its absolute path."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_parquet(tmp_path / folder / "in.parquet")
    table = pa.concat_tables(read_all(spec(tmp_path, 3))[1])
    assert table.num_rows == 2 * N and len(set(table.column(UID).to_pylist())) == 2 * N
    assert table.column(UID).to_pylist() == expected_uids(tmp_path / "a" / "in.parquet") + expected_uids(
        tmp_path / "b" / "in.parquet")


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "in.parquet")
    (tmp_path / "link.parquet").symlink_to(path)
    (tmp_path / "sub").mkdir()
    units = plan_units(spec([path, tmp_path / "*.parquet", tmp_path / "sub" / ".." / "in.parquet"], 100))
    assert [(u.path, u.size) for u in units] == [(str(path), N)]


# -- bad input ----------------------------------------------------------------------------


def assert_one_line(err: UserError, *fragments: str) -> None:
    message = str(err)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "nocap.parquet"
    pq.write_table(pa.table({"url": URLS, "text": CAPTIONS}), path)
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "missing column 'caption'", "has: url, text",
                    "set input.url_column / input.caption_column / input.keep_columns")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_missing_column_in_text_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text("url,caption\nu,c\n" if suffix == ".csv" else '{"url": "u", "caption": "c"}\n')
    with pytest.raises(InputError) as info:
        plan_units(spec(path, keep_columns=["license"]))
    assert_one_line(info.value, str(path), "missing column 'license'", "input.keep_columns")


@pytest.mark.parametrize("name", ["empty.parquet", "empty.csv", "empty.jsonl", "empty.tar"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.touch()
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "file is empty", "remove it from input.path")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "not a readable parquet file", "remove it from input.path")


def test_corrupt_tar(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tar"
    path.write_bytes(b"this is not a tar archive" * 50)
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "not a readable tar file", "remove it from input.path")


def test_non_utf8_caption_in_csv_becomes_a_read_ledger_row(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"url,caption,license\n"
                     b"http://h/0.jpg,a fine caption,a\n"
                     b"http://h/1.jpg,caf\xe9 au lait,b\n"
                     b"http://h/2.jpg,another fine one,c\n"
                     b"http://h/3.jpg,last one,d\n")
    units, tables = read_all(spec(path, 3, keep_columns=["license"]))
    assert [(u.start, u.stop) for u in units] == [(0, 3), (3, 4)]
    rows = pa.concat_tables(tables).to_pylist()
    assert [r["url"] for r in rows] == [f"http://h/{i}.jpg" for i in range(4)]
    assert [r["caption"] for r in rows] == ["a fine caption", "caf\ufffd au lait", "another fine one", "last one"]
    assert [r["license"] for r in rows] == ["a", "b", "c", "d"]
    assert [(r[DROP_STAGE], r[DROP_REASON]) for r in rows] == [
        (None, None), (READ_STAGE, "invalid_utf8"), (None, None), (None, None),
    ]
    assert rows[1][DROP_DETAIL] == "column 'caption': invalid continuation byte at byte 3"
    assert READ_STAGE == "read"
    assert all(re.fullmatch(r"[0-9a-f]{32}", r[UID]) for r in rows)


def test_line_that_is_not_json_becomes_a_read_ledger_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"url": "http://h/0.jpg", "caption": "zero"}\n'
                     b"{this is not json\n"
                     b'{"url": "http://h/2.jpg", "caption": "two"}\n'
                     b"[1, 2, 3]\n"
                     b'{"url": "http://h/4.jpg", "caption": "caf\xe9"}\n'
                     b'{"url": "http://h/5.jpg", "caption": "five"}\n')
    units, tables = read_all(spec(path, 4))
    assert [(u.start, u.stop) for u in units] == [(0, 4), (4, 6)]
    rows = pa.concat_tables(tables).to_pylist()
    assert [r[ROW] for r in rows] == list(range(6))
    assert [(r[DROP_STAGE], r[DROP_REASON]) for r in rows] == [
        (None, None), (READ_STAGE, "invalid_json"), (None, None), (READ_STAGE, "invalid_json"),
        (READ_STAGE, "invalid_utf8"), (None, None),
    ]
    assert rows[3][DROP_DETAIL] == "not a JSON object"
    assert [r["url"] for r in rows if r[DROP_STAGE] is None] == ["http://h/0.jpg", "http://h/2.jpg", "http://h/5.jpg"]
    assert [r["caption"] for r in rows if r[DROP_STAGE] is None] == ["zero", "two", "five"]


def test_first_line_not_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notjson.jsonl"
    path.write_text("url,caption\nu,c\n")
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "first line is not JSON", "expected one JSON object per line")


def test_nonexistent_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, "input.path", repr(str(path)), "does not exist", "check the path")


def test_glob_matching_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.parquet")
    with pytest.raises(InputError) as info:
        plan_units(spec(pattern))
    assert_one_line(info.value, "input.path", f"no file matches {pattern!r}", "check the pattern")


def test_unknown_extension_needs_a_format(tmp_path: Path) -> None:
    path = tmp_path / "in.data"
    path.write_text("url,caption\nu,c\n")
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert_one_line(info.value, str(path), "set input.format")
    units = plan_units(spec(path, format="csv"))
    assert [(u.format, u.size) for u in units] == [("csv", 1)]


def test_directory_without_inputs(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing to read")
    with pytest.raises(InputError) as info:
        plan_units(spec(tmp_path))
    assert_one_line(info.value, "input.path", str(tmp_path), "holds no parquet/csv/tsv/jsonl/tar file")


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("url,caption\n")
    with pytest.raises(InputError, match="hold no rows"):
        plan_units(spec(path))


def test_input_errors_are_user_errors() -> None:
    assert issubclass(InputError, UserError) and InputError.exit_code == 2


def test_malformed_csv_row_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("url,caption\nhttp://h/1.jpg,one\nhttp://h/2.jpg\nhttp://h/3.jpg,three\n")
    with pytest.raises(InputError) as info:
        plan_units(spec(path, 10))
    assert_one_line(info.value, str(path), "not a readable CSV file", "Expected 2 columns, got 1", "fix the row")


def test_quoted_newlines_in_csv_values(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text('url,caption\nhttp://h/1.jpg,"two\nlines"\nhttp://h/2.jpg,plain\nhttp://h/3.jpg,"a, b"\n')
    units, tables = read_all(spec(path, 2))
    assert sum(u.size for u in units) == 3
    rows = pa.concat_tables(tables).to_pylist()
    assert [r["caption"] for r in rows] == ["two\nlines", "plain", "a, b"]
    assert [r[ROW] for r in rows] == [0, 1, 2]


def test_uids_taken_from_the_input(tmp_path: Path) -> None:
    """DataComp pools carry their own 32-hex uids: ``input.uid_column`` keeps them; a malformed
    one is a ``read`` ledger row (with a hashed uid, so the row is still accounted for)."""
    given = ["0123456789ABCDEF0123456789abcdef", "f" * 32, "not-a-uid", None]
    path = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"url": [f"http://x/{i}" for i in range(4)], "caption": ["a b c"] * 4, "uid": given}), path)
    table = read_all(spec(path, rows_per_unit=10, uid_column="uid"))[1][0]
    uids = table.column(UID).to_pylist()
    assert uids[:2] == ["0123456789abcdef0123456789abcdef", "f" * 32]
    hashed = compute_uids(pa.array([f"http://x/{i}" for i in range(4)]), pa.array(["a b c"] * 4), str(path), 0)
    assert uids[2:] == hashed.to_pylist()[2:]
    assert table.column(DROP_STAGE).to_pylist() == [None, None, READ_STAGE, READ_STAGE]
    assert table.column(DROP_REASON).to_pylist() == [None, None, "invalid_uid", "invalid_uid"]
    assert table.column(DROP_DETAIL).to_pylist()[2:] == ["uid='not-a-uid' is not 32 hex chars", "uid=None is not 32 hex chars"]


def test_uids_taken_from_webdataset_json(tmp_path: Path) -> None:
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w") as tar:
        for i, uid_value in enumerate(["a" * 32, "b" * 32]):
            members = {"txt": b"a caption", "json": json.dumps({"url": f"http://x/{i}", "uid": uid_value}).encode()}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{uid_value}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    table = read_all(spec(path, rows_per_unit=10, uid_column="uid"))[1][0]
    assert table.column(UID).to_pylist() == ["a" * 32, "b" * 32]
    assert table.column("url").to_pylist() == ["http://x/0", "http://x/1"]


def test_uid_column_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing column 'uid'"):
        plan_units(spec(write_parquet(tmp_path / "in.parquet"), uid_column="uid"))


@pytest.mark.parametrize("row_group_size", [1, 3, 7, 23])
@pytest.mark.parametrize("rows_per_unit", [1, 4, 5, 23, 30])
def test_parquet_units_across_row_groups(tmp_path: Path, row_group_size: int, rows_per_unit: int) -> None:
    urls = [f"http://x/{i}" for i in range(23)]
    pq.write_table(pa.table({"url": urls, "caption": ["c"] * 23}), tmp_path / "in.parquet", row_group_size=row_group_size)
    units, tables = read_all(spec(tmp_path / "in.parquet", rows_per_unit=rows_per_unit))
    assert [t.column("url").to_pylist() for t in tables] == [urls[u.start:u.stop] for u in units]
    assert sum(t.num_rows for t in tables) == 23


# -- headerless csv/tsv (issue 5 §7) ------------------------------------------------------


CC_LINES = ["a dog runs on the beach\thttp://h/0.jpg", "actor attends the premiere\thttp://h/1.jpg",
            'a "quoted" word, a comma\thttp://h/2.jpg']


def test_headerless_tsv_in_conceptual_captions_format(tmp_path: Path) -> None:
    """Before: the first row was taken as the header ('missing column 'url' (has: a dog runs ...)')."""
    path = tmp_path / "Train_GCC-training.tsv"
    path.write_text("\n".join(CC_LINES) + "\n")
    named = spec(path, 2, header=False, columns=["caption", "url"])
    units, tables = read_all(named)
    assert [(u.start, u.stop) for u in units] == [(0, 2), (2, 3)]
    rows = pa.concat_tables(tables).to_pylist()
    assert [(r["url"], r["caption"]) for r in rows] == [
        ("http://h/0.jpg", "a dog runs on the beach"), ("http://h/1.jpg", "actor attends the premiere"),
        ("http://h/2.jpg", 'a "quoted" word, a comma')]
    # without input.columns the columns are named by position, '0', '1', ... (YAML ints accepted)
    positional = spec(path, 2, header=False, url_column=1, caption_column=0)
    assert pa.concat_tables(read_all(positional)[1]).select(["url", "caption"]) == pa.concat_tables(tables).select(
        ["url", "caption"])


def test_headerless_csv_keeps_columns_and_checks_names(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("http://h/0.jpg,zero,cc-by\nhttp://h/1.jpg,one,cc-0\n")
    rows = pa.concat_tables(read_all(spec(path, header=False, columns=["url", "caption", "license"],
                                          keep_columns=["license"]))[1]).to_pylist()
    assert [(r["url"], r["caption"], r["license"]) for r in rows] == [("http://h/0.jpg", "zero", "cc-by"),
                                                                      ("http://h/1.jpg", "one", "cc-0")]
    with pytest.raises(InputError) as info:
        plan_units(spec(path, header=False, columns=["url", "caption"]))
    assert_one_line(info.value, str(path), "input.columns names 2 columns but the first line has 3")
    with pytest.raises(InputError) as info:
        plan_units(spec(path, header=False))
    assert_one_line(info.value, str(path), "missing column 'url' (has: 0, 1, 2;",
                    "columns of a headerless file are named by input.columns, else '0', '1', ...")


def test_missing_column_names_input_header(tmp_path: Path) -> None:
    path = tmp_path / "cc.tsv"
    path.write_text("\n".join(CC_LINES) + "\n")
    with pytest.raises(InputError) as info:
        plan_units(spec(path))
    assert str(info.value) == (f"{path}: missing column 'url' (has: a dog runs on the beach, http://h/0.jpg; set "
                               "input.url_column / input.caption_column / input.keep_columns, or input.header: false "
                               "if the file has no header line)")


def test_header_settings_apply_to_csv_and_tsv_only(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "in.parquet")
    with pytest.raises(InputError) as info:
        plan_units(spec(path, header=False))
    assert_one_line(info.value, str(path), "input.header / input.columns apply to csv and tsv files only")


@pytest.mark.parametrize("name", ["in.tar.gz", "in.tgz"])
def test_gzipped_tar_inputs(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(write_tar(tmp_path / "plain.tar").read_bytes()))
    (tmp_path / "plain.tar").unlink()
    units, tables = read_all(spec(tmp_path, 4))
    assert [(u.format, u.size) for u in units] == [("webdataset", 4), ("webdataset", 3)]
    assert pa.concat_tables(tables).column("caption").to_pylist() == CAPTIONS
