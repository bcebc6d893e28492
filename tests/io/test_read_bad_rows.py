"""Issue 5 §6 and §4: rows the readers cannot use are ``read`` ledger rows with an exact reason
(the run goes on), and a column that cannot hold text is one line at planning."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import InputSpec
from curate.errors import InputError
from curate.io.readers import READ_STAGE, plan_units, read_unit
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW


def read_rows(path: Path, rows_per_unit: int = 100, **kwargs) -> list[dict]:
    spec = InputSpec(path=str(path), rows_per_unit=rows_per_unit, **kwargs)
    return pa.concat_tables([read_unit(u, spec) for u in plan_units(spec)]).to_pylist()


def drops(rows: list[dict]) -> list[tuple]:
    return [(r[ROW], r[DROP_STAGE], r[DROP_REASON], r[DROP_DETAIL]) for r in rows if r[DROP_STAGE] is not None]


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sample(key: str, json_member: bytes | None = None, txt: bytes = b"a caption", jpg: bytes = b"\xff\xd8jpeg") -> list:
    members = [(f"{key}.jpg", jpg), (f"{key}.txt", txt)]
    return members + ([(f"{key}.json", json_member)] if json_member is not None else [])


def test_tar_json_that_is_not_an_object_or_has_a_non_string_url(tmp_path: Path) -> None:
    """Before: AttributeError ('NoneType'/'list'/'str' object has no attribute 'get') or
    ArrowTypeError (an integer url) killed the whole run."""
    path = write_tar(tmp_path / "in.tar", [
        *sample("s0", b'{"url": "http://h/0.jpg"}'),
        *sample("s1", b"null"),
        *sample("s2", b"[1, 2]"),
        *sample("s3", b'"just a string"'),
        *sample("s4", b'{"url": 5}'),
        *sample("s5", b'{"url": "http://h/5.jpg", "caption": {"a": 1}}', txt=b""),
        *sample("s6", b"{not json"),
        *sample("s7", b'{"url": "http://h/7.jpg"}', txt=b"caf\xe9 au lait"),
        *sample("s8", b'{"url": "http://h/8.jpg"}'),
    ])
    # s5 has an empty .txt: the caption comes from .txt when present, so drop it to test .json
    members = [(n, d) for n, d in _members(path) if n != "s5.txt"]
    write_tar(path, members)
    rows = read_rows(path, 4)
    assert drops(rows) == [
        (1, READ_STAGE, "invalid_json", "s1.json: a JSON null, expected an object"),
        (2, READ_STAGE, "invalid_json", "s2.json: a JSON array, expected an object"),
        (3, READ_STAGE, "invalid_json", "s3.json: a JSON string, expected an object"),
        (4, READ_STAGE, "wrong_type", "s4.json: 'url' is a JSON number, expected a string"),
        (5, READ_STAGE, "wrong_type", "s5.json: 'caption' is a JSON object, expected a string"),
        (6, READ_STAGE, "invalid_json", "s6.json: not JSON (Expecting property name enclosed in double quotes: "
                                        "line 1 column 2 (char 1))"),
        (7, READ_STAGE, "invalid_utf8", "s7.txt: invalid continuation byte at byte 3"),
    ]
    assert [r["url"] for r in rows] == ["http://h/0.jpg", "s1", "s2", "s3", None, "http://h/5.jpg", "s6",
                                        "http://h/7.jpg", "http://h/8.jpg"]
    # a dropped row releases its image bytes, as after any stage
    assert [r["image"] is not None for r in rows] == [True] + [False] * 7 + [True]


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def test_tar_kept_fields_of_mixed_types_do_not_stop_the_run(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "in.tar", [*sample("a", b'{"url": "u", "license": 3}'),
                                           *sample("b", b'{"url": "u", "license": "cc-by"}')])
    rows = read_rows(path, keep_columns=["license"])
    assert [r["license"] for r in rows] == ["3", "cc-by"] and drops(rows) == []


@pytest.mark.parametrize(("column", "values", "kind"), [
    ("url", [["http://h/0.jpg"], ["http://h/1.jpg"]], "list<element: string>"),
    ("url", [{"a": 1}, {"a": 2}], "struct<a: int64>"),
    ("caption", [["a"], ["b"]], "list<element: string>"),
    ("caption", [{"text": "a"}, {"text": "b"}], "struct<text: string>"),
    ("caption", [1, 2], "int64"),
])
def test_parquet_text_column_of_another_type_is_one_line_at_planning(tmp_path: Path, column, values, kind) -> None:
    """Before: ArrowNotImplementedError ('Unsupported cast from list<...> to utf8') from a worker.
    A parquet column has one type for the whole file, so it is a setting mistake, told before Ray starts."""
    table = {"url": ["http://h/0.jpg", "http://h/1.jpg"], "caption": ["a", "b"]} | {column: values}
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(InputError) as info:
        plan_units(InputSpec(path=str(path)))
    assert str(info.value) == (f"{path}: column {column!r} holds {kind}, not text (point the input.*_column setting at "
                               f"a string column, or re-export the file with strings there)")


def test_parquet_binary_url_with_invalid_utf8_is_a_ledger_row(tmp_path: Path) -> None:
    """Before: ArrowInvalid 'Invalid UTF8 payload' killed the run; the README promises invalid_utf8."""
    path = tmp_path / "in.parquet"
    urls = pa.array([b"http://h/0.jpg", b"http://h/\xff.jpg", None, b"http://h/3.jpg"], pa.binary())
    captions = pa.array([b"zero", b"one", b"two", b"thr\xc3"], pa.large_binary())
    pq.write_table(pa.table({"url": urls, "caption": captions}), path)
    rows = read_rows(path, 2)
    assert drops(rows) == [
        (1, READ_STAGE, "invalid_utf8", "column 'url': invalid start byte at byte 9"),
        (3, READ_STAGE, "invalid_utf8", "column 'caption': unexpected end of data at byte 3"),
    ]
    assert [r["url"] for r in rows] == ["http://h/0.jpg", "http://h/\ufffd.jpg", None, "http://h/3.jpg"]
    assert [r["caption"] for r in rows][:3] == ["zero", "one", "two"]


def test_parquet_binary_and_dictionary_text_columns_are_read(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    urls = pa.array(["http://h/0.jpg", "http://h/1.jpg"]).dictionary_encode()
    pq.write_table(pa.table({"url": urls, "caption": pa.array([b"a", b"b"], pa.binary())}), path)
    rows = read_rows(path)
    assert [(r["url"], r["caption"]) for r in rows] == [("http://h/0.jpg", "a"), ("http://h/1.jpg", "b")]
    assert drops(rows) == []


def test_jsonl_text_value_of_another_type_is_a_ledger_row(tmp_path: Path) -> None:
    """Before: a unit whose captions were all objects died with ArrowNotImplementedError (cast
    struct to utf8); in a mixed unit an object or number became its JSON text as the caption."""
    path = tmp_path / "in.jsonl"
    lines = [{"url": "http://h/0.jpg", "caption": {"a": 1}}, {"url": "http://h/1.jpg", "caption": {"b": 2}},
             {"url": "http://h/2.jpg", "caption": "fine"}, {"url": "http://h/3.jpg", "caption": 5},
             {"url": ["http://h/4.jpg"], "caption": "x"}, {"url": "http://h/5.jpg", "caption": True},
             {"url": "http://h/6.jpg", "caption": None}, {"url": "http://h/7.jpg", "caption": "2019-01-01"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = read_rows(path, 2)
    assert drops(rows) == [
        (0, READ_STAGE, "wrong_type", "'caption' is a JSON object, expected a string"),
        (1, READ_STAGE, "wrong_type", "'caption' is a JSON object, expected a string"),
        (3, READ_STAGE, "wrong_type", "'caption' is a JSON number, expected a string"),
        (4, READ_STAGE, "wrong_type", "'url' is a JSON array, expected a string"),
        (5, READ_STAGE, "wrong_type", "'caption' is a JSON boolean, expected a string"),
    ]
    # strings stay strings (no timestamp inference), a null caption is a missing caption
    assert [r["caption"] for r in rows][6:] == [None, "2019-01-01"]


def test_tar_repeated_key_is_two_samples_not_one(tmp_path: Path) -> None:
    """Before: the second 'a' overwrote the first: 2 rows for 3 samples, caption 'three' with a's
    first image. Now each sample is a row; the repeat is a duplicate_key ledger row."""
    path = write_tar(tmp_path / "in.tar", [
        *sample("a", b'{"url": "http://h/1.jpg"}', txt=b"one", jpg=b"jpg-1"),
        *sample("b", b'{"url": "http://h/2.jpg"}', txt=b"two", jpg=b"jpg-2"),
        *sample("a", b'{"url": "http://h/3.jpg"}', txt=b"three", jpg=b"jpg-3"),
        ("c.txt", b"four"), ("c.txt", b"five"),  # a repeated extension starts a new sample (WebDataset)
    ])
    units = plan_units(InputSpec(path=str(path), rows_per_unit=2))
    assert [(u.start, u.stop) for u in units] == [(0, 2), (2, 4), (4, 5)]
    rows = read_rows(path, 2)
    assert [(r["url"], r["caption"], r["image"]) for r in rows][:2] == [("http://h/1.jpg", "one", b"jpg-1"),
                                                                      ("http://h/2.jpg", "two", b"jpg-2")]
    assert [r["caption"] for r in rows] == ["one", "two", "three", "four", "five"]
    assert drops(rows) == [(2, READ_STAGE, "duplicate_key", "key 'a' already used by row 0 of this file"),
                           (4, READ_STAGE, "duplicate_key", "key 'c' already used by row 3 of this file")]


def test_oversized_tar_member_is_a_ledger_row_and_never_read(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "in.tar", [*sample("a"), *sample("b", jpg=b"x" * 1001), *sample("c")])
    rows = read_rows(path, max_member_bytes=1000)
    assert drops(rows) == [(1, READ_STAGE, "too_large", "b.jpg: 1001 bytes, over input.max_member_bytes=1000")]
    assert [r["image"] for r in rows] == [b"\xff\xd8jpeg", None, b"\xff\xd8jpeg"]
    assert [r["caption"] for r in rows] == ["a caption"] * 3
