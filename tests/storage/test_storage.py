"""curate.storage against local disk and a real S3 server: URIs, listing, globbing, whole-or-nothing
writes, fingerprints with the store's ETag, and filesystems that pickle for Ray workers."""

from __future__ import annotations

import gzip
import io
import pickle

import pytest

from curate import storage
from curate.errors import UserError


def test_local_paths_are_absolute_and_relative_ones_resolve(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, path = storage.filesystem_of("sub/x.txt")
    assert (type(fs).__name__, path) == ("LocalFileSystem", str(tmp_path / "sub" / "x.txt"))
    assert storage.is_local("sub/x.txt") and storage.is_local("file:///tmp/x") and not storage.is_local("s3://b/k")
    assert storage.join("s3://b/run/", "shards", "/00000.tar") == "s3://b/run/shards/00000.tar"
    assert storage.StoreUri("s3://b/run") / "stats" / "units" == "s3://b/run/stats/units"
    with pytest.raises(UserError) as refused:
        storage.filesystem_of("ftp://host/x")
    assert str(refused.value) == "ftp://host/x: unsupported storage scheme 'ftp' (use a local path, s3:// or gs://)"


def test_store_round_trip(bucket) -> None:
    storage.write_bytes(f"{bucket}/run/a/b.txt", b"hello" * 1000)
    storage.write_bytes(f"{bucket}/run/c.tar", b"x")
    assert storage.read_bytes(f"{bucket}/run/c.tar") == b"x"
    assert storage.file_size(f"{bucket}/run/a/b.txt") == 5000
    assert (storage.exists(f"{bucket}/run/a/b.txt"), storage.exists(f"{bucket}/run/nope")) == (True, False)
    assert storage.list_files(f"{bucket}/run") == [f"{bucket}/run/a/b.txt", f"{bucket}/run/c.tar"]
    assert storage.list_files(f"{bucket}/missing") == []
    assert storage.children(f"{bucket}/run") == ["a", "c.tar"]
    with storage.open_input(f"{bucket}/run/a/b.txt") as handle:
        handle.seek(4995)
        assert handle.read() == b"hello"
    storage.delete_dir(f"{bucket}/run/a")
    storage.delete_dir(f"{bucket}/run/a")  # missing is fine
    storage.delete(f"{bucket}/run/c.tar")
    storage.delete(f"{bucket}/run/c.tar")
    assert storage.list_files(f"{bucket}/run") == []


def test_glob_matches_within_and_across_segments(bucket) -> None:
    for name in ("in/a.parquet", "in/b.csv", "in/deep/c.parquet", "in/deep/x/d.parquet", "other/e.parquet"):
        storage.write_bytes(f"{bucket}/{name}", b"1")
    assert storage.glob(f"{bucket}/in/*.parquet") == [f"{bucket}/in/a.parquet"]
    assert storage.glob(f"{bucket}/in/**/*.parquet") == [f"{bucket}/in/{n}" for n in
                                                           ("a.parquet", "deep/c.parquet", "deep/x/d.parquet")]
    assert storage.glob(f"{bucket}/in/[ab].*") == [f"{bucket}/in/a.parquet", f"{bucket}/in/b.csv"]
    assert storage.glob(f"{bucket}/in/?.csv") == [f"{bucket}/in/b.csv"]
    assert storage.glob(f"{bucket}/in/*.tar") == []


def test_fingerprint_is_the_etag_on_a_store_and_the_mtime_locally(bucket, tmp_path) -> None:
    storage.write_bytes(f"{bucket}/x.parquet", b"one")
    uri, size, etag = storage.fingerprint(f"{bucket}/x.parquet")
    assert (uri, size) == (f"{bucket}/x.parquet", 3) and etag.startswith('"') and len(etag) > 10
    storage.write_bytes(f"{bucket}/x.parquet", b"two")
    assert storage.fingerprint(f"{bucket}/x.parquet")[2] != etag  # same size, new content: a new version
    local = tmp_path / "y.csv"
    local.write_text("url,caption\n")
    assert storage.fingerprint(str(local)) == [str(local), 12, int(local.stat().st_mtime)]


def test_a_failed_write_leaves_nothing(bucket, tmp_path) -> None:
    for uri in (f"{bucket}/half.tar", str(tmp_path / "half.tar")):
        with pytest.raises(RuntimeError, match="cut short"), storage.open_output(uri) as handle:
            handle.write(b"x" * 100)
            raise RuntimeError("cut short")
        assert not storage.exists(uri)
    assert list(tmp_path.iterdir()) == []


def test_filesystems_pickle_for_workers(bucket) -> None:
    storage.write_bytes(f"{bucket}/p.txt", b"pickled")
    fs, path = storage.filesystem_of(f"{bucket}/p.txt")
    with pickle.loads(pickle.dumps(fs)).open_input_stream(path) as stream:
        assert stream.read() == b"pickled"


def test_store_inputs_read_like_local_files(bucket) -> None:
    from curate.io.read_common import open_binary

    text = b"url,caption\nhttp://a,one\nhttp://b,two\n"
    storage.write_bytes(f"{bucket}/in/x.csv", text)
    storage.write_bytes(f"{bucket}/in/x.jsonl.gz", gzip.compress(text))
    with open_binary(f"{bucket}/in/x.csv") as handle:
        assert handle.readline() == b"url,caption\n"
        handle.seek(0, io.SEEK_END)
        assert handle.tell() == len(text)
        handle.seek(13)
        assert (handle.readline(), handle.read(4)) == (b"ttp://a,one\n", b"http")
    with open_binary(f"{bucket}/in/x.jsonl.gz") as handle:
        assert handle.read() == text
