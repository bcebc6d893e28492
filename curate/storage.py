"""The one module that knows URIs: local paths, ``s3://bucket/key`` and ``gs://bucket/key``.

Everything that reads inputs or writes the run directory goes through these functions, so the
rest of curate handles a URI string and never a scheme. Filesystems come from ``pyarrow.fs`` and
are cached per process; they pickle (Ray workers receive them).

S3 settings come from the standard environment, as the AWS CLI, boto3 and s3fs read it:
``AWS_ENDPOINT_URL`` (pyarrow ignores it, so it is passed as ``endpoint_override`` here),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` and ``AWS_REGION``
(or ``AWS_DEFAULT_REGION``). ``AWS_REQUEST_CHECKSUM_CALCULATION`` defaults to ``when_required``:
with the SDK's newer default, S3 servers that do not decode aws-chunked uploads (SeaweedFS 4.48)
store the chunk framing inside the object, which then reads back corrupt.
GCS uses pyarrow's default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server).
"""

from __future__ import annotations

import contextlib
import functools
import glob as local_glob
import io
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow.fs as pafs

from curate.errors import UserError

__all__ = ["StoreUri", "children", "delete", "delete_dir", "exists", "file_size", "filesystem_of", "fingerprint", "glob",
           "is_local", "join", "list_files", "list_sizes", "open_input", "open_output", "read_bytes", "scheme_of", "write_bytes"]

os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")

_STORE_SCHEMES = ("s3", "gs")
_S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_REGION", "AWS_DEFAULT_REGION")


def scheme_of(uri: str) -> str:
    """``"s3"``, ``"gs"`` or ``"file"`` (a plain path or ``file://``)."""
    head, sep, _ = str(uri).partition("://")
    if not sep or head == "file":
        return "file"
    if head == "gcs":
        return "gs"
    if head not in _STORE_SCHEMES:
        raise UserError(f"{uri}: unsupported storage scheme {head!r} (use a local path, s3:// or gs://)")
    return head


def is_local(uri: str) -> bool:
    return scheme_of(uri) == "file"


def _local_path(uri: str) -> str:
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return os.path.normpath(os.path.abspath(uri))


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)``: a local path becomes absolute; ``s3://b/k`` -> ``"b/k"``."""
    scheme = scheme_of(uri)
    if scheme == "file":
        return _local_fs(), _local_path(uri)
    path = str(uri).partition("://")[2].strip("/")
    if scheme == "gs":
        return _gcs_fs(), path
    return _s3_fs(tuple(os.environ.get(name) for name in _S3_ENV)), path


@functools.cache
def _local_fs() -> pafs.FileSystem:
    return pafs.LocalFileSystem()


@functools.cache
def _gcs_fs() -> pafs.FileSystem:
    return pafs.GcsFileSystem()


@functools.cache
def _s3_fs(settings: tuple[str | None, ...]) -> pafs.FileSystem:
    # Keyed by the environment's values, so a changed endpoint or key gets its own client.
    endpoint, key, secret, token, region, default_region = settings
    options: dict = {"region": region or default_region or "us-east-1"}
    if key and secret:
        options.update(access_key=key, secret_key=secret, session_token=token)
    if endpoint:
        scheme, sep, host = endpoint.partition("://")
        options.update(scheme=scheme if sep else "https", endpoint_override=(host if sep else scheme).rstrip("/"))
    return pafs.S3FileSystem(**options)


class StoreUri(str):
    """A store URI that joins with ``/`` like a ``Path`` does: ``StoreUri("s3://b/run") / "shards"``."""

    def __truediv__(self, part: str) -> StoreUri:
        return StoreUri(join(self, str(part)))

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


def join(uri: str, *parts: str) -> str:
    """``uri/part/...`` keeping the scheme (local paths join with ``os.path.join``)."""
    if is_local(uri):
        return os.path.join(str(uri), *parts)
    return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])


def _uri(base: str, path: str) -> str:
    """The URI of ``path`` (inside the filesystem of ``base``)."""
    if is_local(base):
        return path
    return f"{scheme_of(base)}://{path}"


def open_input(uri: str) -> io.BufferedReader:
    """A seekable binary file with ``readline`` (pyarrow's own files have none), read through a
    1 MiB buffer: on a store each refill is one ranged GET."""
    fs, path = filesystem_of(uri)
    return io.BufferedReader(fs.open_input_file(path), 1 << 20)


def _info(uri: str) -> pafs.FileInfo:
    fs, path = filesystem_of(uri)
    return fs.get_file_info(path)


def file_size(uri: str) -> int:
    info = _info(uri)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such file")
    return info.size


def exists(uri: str) -> bool:
    return _info(uri).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem_of(uri)
    with fs.open_input_stream(path, compression=None) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``uri`` whole or not at all (see :func:`open_output`)."""
    with open_output(uri) as handle:
        handle.write(data)


@contextlib.contextmanager
def open_output(uri: str) -> Iterator[BinaryIO]:
    """A binary file that appears at ``uri`` whole or not at all: locally a ``.partial`` file
    renamed into place on success (removed on failure); on a store one object, which readers
    see only once its upload completes (a killed process leaves nothing; an exception deletes
    what its upload completed)."""
    if is_local(uri):
        path = _local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        try:
            with open(partial, "wb") as handle:
                yield handle
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return
    fs, path = filesystem_of(uri)
    stream = fs.open_output_stream(path, compression=None)  # bytes as given: no gzip because of a ".gz" name
    try:
        yield stream
    except BaseException:
        # pyarrow cannot abort an upload: closing completes it, so the object is deleted again.
        stream.close()
        delete(uri)
        raise
    stream.close()


def list_files(uri_dir: str) -> list[str]:
    """Every file below ``uri_dir`` (recursive) as full URIs, sorted; empty if it does not exist."""
    return list(list_sizes(uri_dir))


def list_sizes(uri_dir: str) -> dict[str, int]:
    """:func:`list_files` with each file's size, from the same listing."""
    fs, path = filesystem_of(uri_dir)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    try:
        infos = fs.get_file_info(selector)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {_uri(uri_dir, info.path): info.size for info in sorted(infos, key=lambda i: i.path)
            if info.type == pafs.FileType.File}


def children(uri_dir: str) -> list[str]:
    """Names of the entries directly below ``uri_dir`` (files and directories; a store's common
    prefixes), sorted; empty if it does not exist."""
    fs, path = filesystem_of(uri_dir)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(info.base_name for info in infos)


def delete(uri: str) -> None:
    """Delete one file; a missing one is fine (cleanups are rerun after a kill)."""
    fs, path = filesystem_of(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(path)


def delete_dir(uri: str) -> None:
    """Delete a directory tree (a key prefix on a store); a missing one is fine."""
    fs, path = filesystem_of(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(path)


def fingerprint(uri: str) -> list:
    """``[uri, size, version]``: the store's ETag where it offers one, else the mtime in whole
    seconds (what local runs have always recorded, so their manifests still match)."""
    info = _info(uri)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such file")
    if not is_local(uri):
        fs, path = filesystem_of(uri)
        with fs.open_input_stream(path, compression=None) as stream:
            etag = (stream.metadata() or {}).get(b"ETag") or (stream.metadata() or {}).get("ETag")
        if etag:
            return [uri, info.size, etag.decode() if isinstance(etag, bytes) else etag]
    return [uri, info.size, int(info.mtime.timestamp()) if info.mtime else 0]


_MAGIC = re.compile(r"[*?[]")


def glob(pattern_uri: str) -> list[str]:
    """Files matching a glob (``*``, ``?``, ``[...]`` within one path segment, ``**`` across
    segments), sorted. Locally Python's ``glob`` (recursive); on a store a listing of the
    longest prefix without wildcards, matched against the pattern."""
    if is_local(pattern_uri):
        return sorted(m for m in local_glob.glob(str(pattern_uri), recursive=True) if os.path.isfile(m))
    fs, pattern = filesystem_of(pattern_uri)
    literal = pattern[:_MAGIC.search(pattern).start()] if _MAGIC.search(pattern) else pattern
    base = literal.rsplit("/", 1)[0] if "/" in literal else literal
    regex = re.compile(_translate(pattern))
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(_uri(pattern_uri, info.path) for info in fs.get_file_info(selector)
                  if info.type == pafs.FileType.File and regex.fullmatch(info.path))


def _translate(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body[0] in "!^" else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)
