"""Image download: fetch (:mod:`curate.net`), then decode, resize and encode with img2dataset's
``Resizer`` (Beaumont 2021, github.com/rom1504/img2dataset), as img2dataset does.

Fetching (:class:`curate.net.fetch.Fetcher`): aiohttp on one event loop per worker, beside the
main thread that decodes. Every attempt has a hard deadline (``timeout``: connect + headers +
body, from the moment its request starts; decoding is never charged to it); at most ``threads``
requests run at once, and a worker holds at most ``buffer_bytes`` of bodies (being read or
waiting to be decoded) before it starts more; ``max_bytes`` caps one body (a larger
``Content-Length`` is refused before reading). Transient failures are retried ``retries`` times
after exponential backoff with full jitter, or after the server's ``Retry-After``, capped at
``max_retry_wait``. X-Robots-Tag opt-outs (noai, noimageai, noindex, noimageindex by default,
as img2dataset) are honoured.

Policy (:mod:`curate.net.policy`, issue 5 §2): only ``http`` and ``https`` (``allow_schemes``
narrows that); nothing local is ever opened. Every hop, redirects included, is checked before
connecting: loopback, link-local, private, CGNAT, unique-local, multicast, unspecified, reserved
and IPv4-embedding IPv6 forms are refused unless ``allow_private`` lists their range; the
directory served by ``input.serve`` is reachable at exactly its host and port. URLs are
percent-encoded as a browser would (spaces, quotes, non-ASCII).

Decoding (:meth:`DownloadStage._decode`, the one place that touches pixels): the header is probed
first (PIL, lazy) so that a decompression bomb (width x height above ``max_pixels``) is rejected
without ever being decoded, and a JPEG without its end-of-image marker is rejected as truncated.

Reads ``url``. Writes ``jpg`` (encoded bytes), ``width``, ``height``, ``orig_width``,
``orig_height``, ``orig_bytes``, ``download_status`` (null when fetched and decoded, else the
reason) and ``download_error`` (the message). Reasons: ``http_<code>``, ``timeout``,
``connection_reset``, ``connection_refused``, ``dns_error``, ``connect_error``, ``ssl_error``,
``bad_response``, ``bad_url``, ``blocked_scheme``, ``blocked_address``, ``too_many_redirects``,
``too_large``, ``x_robots_tag``, ``not_an_image``, ``truncated_image``, ``undecodable``,
``decompression_bomb``; :func:`is_transient` says which are worth retrying.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import re
import sys
import threading
import types
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from pydantic import Field, field_validator

from curate.net.fetch import DEFAULT_DISALLOWED, TRANSIENT_REASONS, Fetched, Fetcher, FetchSettings, is_transient
from curate.net.policy import DEFAULT_SCHEMES, NetPolicy, parse_networks
from curate.schema import URL
from curate.stages.base import Decision, Filter, ImageOutput, Resources, RunContext, StageParams, append_columns
from curate.stages.registry import register

__all__ = ["TRANSIENT_REASONS", "DownloadParams", "DownloadStage", "ImageOutput", "is_transient"]
_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


class DownloadParams(StageParams):
    timeout: float = Field(10.0, gt=0, le=600, allow_inf_nan=False,
                           description="hard deadline per attempt, seconds (connect + headers + body)")
    retries: int = Field(0, ge=0, le=10, description="extra attempts after a transient failure (timeout, 5xx, 429, reset)")
    backoff: float = Field(0.5, ge=0, le=60, allow_inf_nan=False,
                           description="first retry waits up to this many seconds (full jitter), doubling per retry")
    max_retry_wait: float = Field(30.0, ge=0, le=600, allow_inf_nan=False,
                                  description="longest wait before a retry, a server's Retry-After included")
    threads: int = Field(64, gt=0, le=1024, description="concurrent requests per worker")
    user_agent_token: str | None = Field(None, description="token named in the User-Agent and matched in X-Robots-Tag")
    disallowed_header_directives: list[str] = Field(default_factory=lambda: list(DEFAULT_DISALLOWED))
    max_bytes: int = Field(20_000_000, gt=0, le=1_000_000_000, description="largest response body accepted (too_large)")
    buffer_bytes: int = Field(256_000_000, ge=1_000_000, le=16_000_000_000,
                              description="body bytes one worker holds at once, being read or waiting to be decoded")
    max_redirects: int = Field(10, ge=0, le=30, description="redirect hops followed, each one policy-checked")
    allow_schemes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCHEMES),
                                     description="URL schemes fetched (http and/or https)")
    allow_private: list[str] = Field(default_factory=list,
                                     description='address ranges reachable despite the policy, e.g. ["127.0.0.0/8"]')
    max_pixels: int = Field(Image.MAX_IMAGE_PIXELS or 89_478_485, gt=0, description="decompression-bomb guard")
    base_url: str | None = Field(None, description="resolve relative URLs against this (set by input.serve)")

    @field_validator("allow_schemes")
    @classmethod
    def _known_schemes(cls, schemes: list[str]) -> list[str]:
        unknown = sorted({s.lower() for s in schemes} - set(DEFAULT_SCHEMES))
        if unknown:
            raise ValueError(f"cannot fetch {', '.join(unknown)} (valid: http, https; serve local files with input.serve)")
        return [s.lower() for s in schemes]

    @field_validator("allow_private")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        parse_networks(values)
        return values


@dataclass(frozen=True)
class Decoded:
    """What decoding one body gives: the encoded output and sizes, or a reason."""

    data: bytes | None
    width: int | None = None
    height: int | None = None
    orig_width: int | None = None
    orig_height: int | None = None
    reason: str | None = None
    error: str | None = None


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
        self.served_url: str | None = None  # input.serve's base URL: the one loopback endpoint allowed
        self._resizer = None
        self._fetcher: Fetcher | None = None

    @property
    def resources(self) -> Resources:
        return Resources(cpus=1.0)

    def bind(self, context: RunContext) -> None:
        self.image_output = context.image_output
        self.served_url = context.base_url
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
        p = self.params
        settings = FetchSettings(
            timeout=p.timeout, retries=p.retries, threads=p.threads, max_bytes=p.max_bytes, buffer_bytes=p.buffer_bytes,
            max_redirects=p.max_redirects, backoff=p.backoff, max_retry_wait=p.max_retry_wait,
            user_agent_token=p.user_agent_token, disallowed=frozenset(d.strip().lower() for d in p.disallowed_header_directives),
            base_url=p.base_url)
        if self._fetcher is not None:
            self._fetcher.close()
        self._fetcher = Fetcher(settings, NetPolicy.build(p.allow_schemes, p.allow_private, self.served_url))

    def __getstate__(self) -> dict:
        # the fetcher (an event loop and its thread) and the resizer belong to one process
        return {**self.__dict__, "_fetcher": None, "_resizer": None}

    def process(self, batch: pa.Table) -> pa.Table:
        urls = batch.column(URL).to_pylist()
        cols: dict[str, list] = {k: [None] * len(urls) for k in self.writes}
        for index, fetched in self._fetcher.fetch(urls):
            self._record(index, fetched, cols)
        return append_columns(batch, {k: pa.array(v, _COLUMN_TYPES[k]) for k, v in cols.items()})

    def decide(self, scored: pa.Table) -> Decision:
        status = scored.column("download_status").combine_chunks()
        return Decision(keep=pc.is_null(status), reason=status, detail=scored.column("download_error").combine_chunks())

    def _record(self, index: int, fetched: Fetched, cols: dict[str, list]) -> None:
        cols["download_status"][index], cols["download_error"][index] = fetched.reason, fetched.error
        if fetched.body is None:
            return
        cols["orig_bytes"][index] = len(fetched.body)
        decoded = self._decode(fetched.body)
        cols["download_status"][index], cols["download_error"][index] = decoded.reason, decoded.error
        if decoded.reason is None:
            cols["jpg"][index] = decoded.data
            cols["width"][index], cols["height"][index] = decoded.width, decoded.height
            cols["orig_width"][index], cols["orig_height"][index] = decoded.orig_width, decoded.orig_height

    def _decode(self, body: bytes) -> Decoded:
        """Probe, guard, resize and encode one body (main thread: img2dataset's Resizer swaps
        process-wide file descriptors and must not run concurrently)."""
        reason, error = _probe(body, self.params.max_pixels)
        if reason is not None:
            return Decoded(None, reason=reason, error=error)
        encoded, width, height, orig_width, orig_height, err = self._resizer(io.BytesIO(body))
        if err is not None or encoded is None:
            return Decoded(None, reason="undecodable", error=err or "decoder returned nothing")
        return Decoded(encoded, width, height, orig_width, orig_height)


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


