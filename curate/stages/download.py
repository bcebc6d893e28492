"""Image download through img2dataset's machinery (Beaumont 2021, github.com/rom1504/img2dataset).

Fetching mirrors ``img2dataset.downloader.download_image`` (its user agent, redirects and
``is_disallowed`` X-Robots-Tag opt-outs: noai, noimageai, noindex, noimageindex by default)
with two additions: a *hard* per-request deadline, so a URL that trickles bytes can never
hang a work unit, and a typed error class per failure. Resizing and re-encoding is
img2dataset's own ``Resizer``, run on the task's main thread as img2dataset does.

Before decoding, the header is probed (PIL, lazy) so that a decompression bomb
(width x height above ``max_pixels``) is rejected without ever being decoded, and a JPEG
without its end-of-image marker is rejected as truncated.

Reads ``url``. Writes ``jpg`` (encoded bytes), ``width``, ``height``, ``orig_width``,
``orig_height``, ``orig_bytes``, ``download_status`` (null when fetched and decoded, else the
reason) and ``download_error`` (the message). Reasons: ``http_<code>``, ``timeout``,
``connection_reset``, ``connection_refused``, ``dns_error``, ``bad_url``, ``file_not_found``,
``too_large``, ``x_robots_tag``, ``not_an_image``, ``truncated_image``, ``undecodable``,
``decompression_bomb``; :func:`is_transient` says which are worth retrying.
"""

from __future__ import annotations

import http.client
import importlib
import importlib.util
import io
import os
import re
import socket
import sys
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from pydantic import Field

from curate.schema import URL
from curate.stages.base import Decision, Filter, ImageOutput, Resources, RunContext, StageParams, append_columns
from curate.stages.registry import register

DEFAULT_DISALLOWED = ("noai", "noimageai", "noindex", "noimageindex")  # img2dataset's defaults
_USER_AGENT = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"
#: Failure reasons worth another attempt later (a regular expression over reasons).
TRANSIENT_REASONS = r"^(timeout|connection_reset|http_5\d\d|http_429)$"
_TRANSIENT = re.compile(TRANSIENT_REASONS)
_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


def is_transient(reason: str | None) -> bool:
    """Failures worth another attempt later: timeouts, 5xx/429 answers, reset connections."""
    return bool(reason) and _TRANSIENT.match(reason) is not None


class DownloadParams(StageParams):
    timeout: float = Field(10.0, gt=0, description="hard deadline per attempt, seconds (connect + headers + body)")
    retries: int = Field(0, ge=0, description="immediate extra attempts after a transient failure")
    threads: int = Field(64, gt=0, description="concurrent requests per worker")
    user_agent_token: str | None = Field(None, description="token named in the User-Agent and matched in X-Robots-Tag")
    disallowed_header_directives: list[str] = Field(default_factory=lambda: list(DEFAULT_DISALLOWED))
    max_bytes: int = Field(50_000_000, gt=0, description="largest response body accepted")
    max_pixels: int = Field(Image.MAX_IMAGE_PIXELS or 89_478_485, gt=0, description="decompression-bomb guard")
    base_url: str | None = Field(None, description="resolve relative URLs against this (set by input.serve)")


@dataclass
class Fetched:
    body: bytes | None
    reason: str | None = None
    error: str | None = None


class _Deadline(Exception):
    pass


_COLUMN_TYPES = {
    "jpg": pa.binary(),
    "width": pa.int32(),
    "height": pa.int32(),
    "orig_width": pa.int32(),
    "orig_height": pa.int32(),
    "orig_bytes": pa.int64(),
    "download_status": pa.string(),
    "download_error": pa.string(),
}


@register
class DownloadStage(Filter):
    """Fetch, probe, resize and encode every image of a batch; failures are ledger rows."""

    kind = "download"
    Params = DownloadParams
    reads = (URL,)
    writes = tuple(_COLUMN_TYPES)
    replayable = False

    def __init__(self, params: DownloadParams, name: str | None = None):
        super().__init__(params, name)
        self.image_output = ImageOutput()
        self._resizer = None
        self._is_disallowed = None
        self._directives: set[str] = set()

    @property
    def resources(self) -> Resources:
        return Resources(cpus=1.0)

    def bind(self, context: RunContext) -> None:
        self.image_output = context.image_output
        if context.base_url and not self.params.base_url:
            self.params = self.params.model_copy(update={"base_url": context.base_url})

    def setup(self) -> None:
        Resizer = img2dataset_module("resizer").Resizer  # noqa: N806

        out = self.image_output
        self._resizer = Resizer(
            image_size=out.image_size,
            resize_mode=out.resize_mode,
            resize_only_if_bigger=out.resize_only_if_bigger,
            encode_format=out.image_format,
            encode_quality=out.encode_quality if out.image_format != "png" else min(out.encode_quality, 9),
        )
        self._is_disallowed = img2dataset_module("downloader").is_disallowed
        self._directives = {d.strip().lower() for d in self.params.disallowed_header_directives}

    def process(self, batch: pa.Table) -> pa.Table:
        urls = batch.column(URL).to_pylist()
        cols: dict[str, list] = {k: [None] * len(urls) for k in self.writes}
        for index, fetched in self._fetch_all(urls):
            self._encode(index, fetched, cols)
        return append_columns(batch, {k: pa.array(v, _COLUMN_TYPES[k]) for k, v in cols.items()})

    def decide(self, scored: pa.Table) -> Decision:
        status = scored.column("download_status").combine_chunks()
        return Decision(keep=pc.is_null(status), reason=status, detail=scored.column("download_error").combine_chunks())

    # -- fetching -------------------------------------------------------------------------

    def _fetch_all(self, urls: list[str | None]):
        """Yield ``(index, Fetched)`` as requests finish; a request past its deadline plus a
        grace second is abandoned as ``timeout`` even if its thread is still blocked."""
        p = self.params
        grace = 1.0
        started: dict[int, float] = {}
        executor = ThreadPoolExecutor(max_workers=min(p.threads, max(1, len(urls))), thread_name_prefix="curate-dl")
        futures: dict[Future, int] = {}
        try:
            for index, url in enumerate(urls):
                futures[executor.submit(self._fetch_with_retries, index, url, started)] = index
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures[future], future.result()
                now = time.monotonic()
                budget = (p.timeout + grace) * (p.retries + 1)
                for future in [f for f in pending if now - started.get(futures[f], now) > budget]:
                    pending.discard(future)
                    yield futures[future], Fetched(None, "timeout", f"no answer within {p.timeout:g}s (abandoned)")
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _fetch_with_retries(self, index: int, url: str | None, started: dict[int, float]) -> Fetched:
        started[index] = time.monotonic()
        result = self._fetch(url)
        for _ in range(self.params.retries):
            if result.body is not None or not is_transient(result.reason):
                break
            result = self._fetch(url)
        return result

    def _fetch(self, url: str | None) -> Fetched:
        p = self.params
        if not url:
            return Fetched(None, "bad_url", "empty URL")
        if p.base_url and "://" not in url:
            url = urllib.parse.urljoin(p.base_url, url)
        deadline = time.monotonic() + p.timeout
        token = f" (compatible; {p.user_agent_token}; +https://github.com/rom1504/img2dataset)" if p.user_agent_token else ""
        agent = _USER_AGENT + token
        try:
            request = urllib.request.Request(url, headers={"User-Agent": agent})
            with urllib.request.urlopen(request, timeout=p.timeout) as response:
                if self._disallowed(response.headers):
                    return Fetched(None, "x_robots_tag", "use of image disallowed by X-Robots-Tag directive")
                return self._read_body(response, deadline)
        except _Deadline:
            return Fetched(None, "timeout", f"body not complete within {p.timeout:g}s")
        except (http.client.HTTPException, OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
            return Fetched(None, *_classify(err))

    def _disallowed(self, headers) -> bool:
        if not self._directives:
            return False
        token = self.params.user_agent_token.strip().lower() if self.params.user_agent_token else None
        return self._is_disallowed(headers, token, self._directives)

    def _read_body(self, response, deadline: float) -> Fetched:
        """Read in pieces, each bounded by the time left, so the deadline is hard."""
        sock = _socket_of(response)
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline
            if sock is not None:
                sock.settimeout(remaining)
            chunk = response.read1(1 << 16) if hasattr(response, "read1") else response.read(1 << 16)
            if not chunk:
                return Fetched(b"".join(chunks))
            chunks.append(chunk)
            size += len(chunk)
            if size > self.params.max_bytes:
                return Fetched(None, "too_large", f"body larger than {self.params.max_bytes} bytes")

    # -- decoding -------------------------------------------------------------------------

    def _encode(self, index: int, fetched: Fetched, cols: dict[str, list]) -> None:
        """Probe, guard and resize one fetched body (main thread: img2dataset's Resizer swaps
        process-wide file descriptors and must not run concurrently)."""
        cols["download_status"][index], cols["download_error"][index] = fetched.reason, fetched.error
        if fetched.body is None:
            return
        body = fetched.body
        cols["orig_bytes"][index] = len(body)
        reason, error = _probe(body, self.params.max_pixels)
        if reason is None:
            encoded, width, height, orig_width, orig_height, err = self._resizer(io.BytesIO(body))
            if err is not None or encoded is None:
                reason, error = "undecodable", err or "decoder returned nothing"
            else:
                cols["jpg"][index] = encoded
                cols["width"][index], cols["height"][index] = width, height
                cols["orig_width"][index], cols["orig_height"][index] = orig_width, orig_height
        cols["download_status"][index], cols["download_error"][index] = reason, error


def img2dataset_module(name: str) -> types.ModuleType:
    """``img2dataset.<name>`` without running the package ``__init__``: that imports its CLI and,
    through webdataset, torch (2.4 s and ~600 MB in every download worker, against 0.9 s and
    170 MB for the resizer and downloader modules alone)."""
    qualified = f"img2dataset.{name}"
    with _IMPORT_LOCK:
        if qualified in sys.modules or "img2dataset" in sys.modules:
            return importlib.import_module(qualified)
        spec = importlib.util.find_spec("img2dataset")
        package = types.ModuleType("img2dataset")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["img2dataset"] = package
        try:
            return importlib.import_module(qualified)
        finally:
            del sys.modules["img2dataset"]  # a later `import img2dataset` runs the real package


_IMPORT_LOCK = threading.Lock()


def _probe(body: bytes, max_pixels: int) -> tuple[str | None, str | None]:
    """Header-only checks before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
            fmt = image.format
    except Image.DecompressionBombError as err:
        return "decompression_bomb", str(err)
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        # PIL names the in-memory file (``<_io.BytesIO object at 0x...>``): drop the address so
        # the ledger detail is the same on every run.
        return "not_an_image", f"{type(err).__name__}: {_ADDRESS.sub('', str(err))}".rstrip()
    if width * height > max_pixels:
        return "decompression_bomb", f"{width}x{height} pixels > max_pixels={max_pixels}"
    if fmt == "JPEG" and not body.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return "truncated_image", "JPEG without end-of-image marker"
    return None, None


_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (TimeoutError, "timeout"),  # socket.timeout is TimeoutError
    ((ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead, BrokenPipeError), "connection_reset"),
    (ConnectionRefusedError, "connection_refused"),
    (socket.gaierror, "dns_error"),
    (FileNotFoundError, "file_not_found"),
    ((ValueError, http.client.InvalidURL), "bad_url"),
)


def _classify(err: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed request; a ``URLError`` is classified by what it wraps."""
    if isinstance(err, urllib.error.HTTPError):
        return f"http_{err.code}", f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        if isinstance(err.reason, str):
            return ("bad_url" if err.reason.startswith("unknown url type") else "url_error"), err.reason
        err = err.reason
    for kinds, reason in _FAILURES:
        if isinstance(err, kinds):
            return reason, str(err) or type(err).__name__
    return _snake(type(err).__name__), str(err)


def _socket_of(response) -> socket.socket | None:
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


