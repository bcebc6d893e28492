"""The template-header tar writer produces exactly what tarfile / webdataset.TarWriter write."""

from __future__ import annotations

import io
import tarfile

import pytest

from curate.io.tar_writer import ShardTarWriter

SAMPLES = [
    ("0123456789abcdef0123456789abcdef", {"txt": b"a red circle", "json": b'{"uid": "x"}', "jpg": b"\xff\xd8" + b"j" * 1000}),
    ("fedcba9876543210fedcba9876543210", {"txt": "caf\u00e9 \u2603".encode(), "json": b"{}"}),
    ("00000000000000000000000000000000", {"txt": b"", "json": b"x" * 512}),  # empty member, exact block
]


def _ours() -> bytes:
    buffer = io.BytesIO()
    writer = ShardTarWriter(buffer)
    for key, members in SAMPLES:
        writer.add(key, members)
    writer.close()
    return buffer.getvalue()


def test_bytes_equal_webdataset_tarwriter() -> None:
    import webdataset as wds

    buffer = io.BytesIO()
    writer = wds.TarWriter(buffer, mtime=0)
    for key, members in SAMPLES:
        writer.write({"__key__": key, **members})
    writer.close()
    assert _ours() == buffer.getvalue()


def test_bytes_equal_tarfile() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        for key, members in SAMPLES:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(members[ext]), 0, 0o444, "bigdata", "bigdata"
                tar.addfile(info, io.BytesIO(members[ext]))
    assert _ours() == buffer.getvalue()


def test_reads_back_in_order() -> None:
    with tarfile.open(fileobj=io.BytesIO(_ours())) as tar:
        names = [(m.name, tar.extractfile(m).read()) for m in tar]
    expected = [(f"{key}.{ext}", members[ext]) for key, members in SAMPLES for ext in sorted(members)]
    assert names == expected


def test_name_longer_than_a_ustar_field_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        ShardTarWriter(io.BytesIO()).add("k" * 100, {"txt": b""})
