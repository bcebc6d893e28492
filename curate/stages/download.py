"""Image download: fetch (:mod:`curate.net`), then decode, resize and encode (:mod:`curate.imaging`),
img2dataset-compatible in output (Beaumont 2021, github.com/rom1504/img2dataset).

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

Decoding (:meth:`DownloadStage._decode`, the one place that touches pixels) is
:class:`curate.imaging.ImageTransformer`: the bytes a decode would allocate are budgeted from the
header before any pixel is decoded (``max_decoded_bytes``, else ``decompression_bomb``), JPEGs much
larger than the output are decoded at reduced size, EXIF orientation is applied, and a JPEG is
truncated when its decoder runs out of data (trailing bytes after the end marker are fine).

Reads ``url``. Writes ``image`` (encoded bytes), ``width``, ``height``, ``orig_width``,
``orig_height``, ``orig_bytes``, ``orig_hash`` (64-bit blake2b of the fetched bytes), ``pixel_hash``
(of the output pixels before encoding, shape included), ``download_status`` (null when fetched and decoded, else the
reason) and ``download_error`` (the message). Reasons: ``http_<code>``, ``timeout``,
``connection_reset``, ``connection_refused``, ``dns_error``, ``connect_error``, ``ssl_error``,
``bad_response``, ``bad_url``, ``blocked_scheme``, ``blocked_address``, ``too_many_redirects``,
``too_large``, ``x_robots_tag``, ``not_an_image``, ``truncated_image``, ``undecodable``,
``decompression_bomb``; :func:`is_transient` says which are worth retrying.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import pyarrow as pa
from pydantic import Field, field_validator

from curate.imaging import DEFAULT_MAX_DECODED_BYTES, ImageResult, ImageTransformer, use_one_core
from curate.net.fetch import DEFAULT_DISALLOWED, TRANSIENT_REASONS, Fetched, Fetcher, FetchSettings, is_transient
from curate.net.policy import DEFAULT_SCHEMES, NetPolicy, parse_networks
from curate.schema import IMAGE_COLUMN_TYPES, URL
from curate.stages.base import (
    Decision,
    Filter,
    ImageOutput,
    Resources,
    RunContext,
    StageParams,
    append_columns,
    status_decision,
)
from curate.stages.registry import register
from curate.stats import metrics

__all__ = ["TRANSIENT_REASONS", "DownloadParams", "DownloadStage", "ImageOutput", "is_transient"]


_FETCH = FetchSettings()  # the fetcher's defaults are the stage's: one place for each number
#: Parameters handed to the fetcher as they are.
_FETCH_FIELDS = ("timeout", "retries", "threads", "max_bytes", "buffer_bytes", "max_redirects", "backoff", "max_retry_wait",
                 "user_agent_token")


class DownloadParams(StageParams):
    timeout: float = Field(_FETCH.timeout, gt=0, le=600, allow_inf_nan=False,
                           description="hard deadline per attempt, seconds (connect + headers + body)")
    retries: int = Field(_FETCH.retries, ge=0, le=10,
                         description="extra attempts after a transient failure (timeout, 5xx, 429, reset)")
    backoff: float = Field(_FETCH.backoff, ge=0, le=60, allow_inf_nan=False,
                           description="first retry waits up to this many seconds (full jitter), doubling per retry")
    max_retry_wait: float = Field(_FETCH.max_retry_wait, ge=0, le=600, allow_inf_nan=False,
                                  description="longest wait before a retry, a server's Retry-After included")
    threads: int = Field(_FETCH.threads, gt=0, le=1024, description="concurrent requests per worker")
    user_agent_token: str | None = Field(None, description="token named in the User-Agent and matched in X-Robots-Tag")
    disallowed_header_directives: list[str] = Field(default_factory=lambda: list(DEFAULT_DISALLOWED))
    max_bytes: int = Field(_FETCH.max_bytes, gt=0, le=1_000_000_000, description="largest response body accepted (too_large)")
    buffer_bytes: int = Field(_FETCH.buffer_bytes, ge=1_000_000, le=16_000_000_000,
                              description="body bytes one worker holds at once, being read or waiting to be decoded")
    max_redirects: int = Field(_FETCH.max_redirects, ge=0, le=30, description="redirect hops followed, each one policy-checked")
    allow_schemes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCHEMES),
                                     description="URL schemes fetched (http and/or https)")
    allow_private: list[str] = Field(default_factory=list,
                                     description='address ranges reachable despite the policy, e.g. ["127.0.0.0/8"]')
    max_decoded_bytes: int = Field(DEFAULT_MAX_DECODED_BYTES, gt=0, le=8_000_000_000,
                                   description="decompression-bomb guard: bytes one decode may allocate "
                                               "(width x height x channels x bytes per channel)")
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


_COLUMN_TYPES = {
    **IMAGE_COLUMN_TYPES,
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
    retryable_reasons: ClassVar[str] = TRANSIENT_REASONS  # what --retry-failed re-attempts

    def __init__(self, params: DownloadParams, name: str | None = None):
        super().__init__(params, name)
        self.image_output = ImageOutput()
        self.served_url: str | None = None  # input.serve's base URL: the one loopback endpoint allowed
        self._transform: ImageTransformer | None = None
        self._fetcher: Fetcher | None = None

    default_resources = Resources(cpus=1.0)
    runs_as_tasks = True  # its setup (a fetcher) is cheap; tasks measured 1.65x an actor pool

    def bind(self, context: RunContext) -> None:
        self.image_output = context.image_output
        self.served_url = context.base_url

    def setup(self) -> None:
        use_one_core()
        self._transform = ImageTransformer(self.image_output, max_decoded_bytes=self.params.max_decoded_bytes)
        p = self.params
        settings = FetchSettings(**p.model_dump(include=set(_FETCH_FIELDS)), base_url=p.base_url or self.served_url,
                                 disallowed=frozenset(d.strip().lower() for d in p.disallowed_header_directives))
        if self._fetcher is not None:
            self._fetcher.close()
        self._fetcher = Fetcher(settings, NetPolicy.build(p.allow_schemes, p.allow_private, self.served_url))

    def __getstate__(self) -> dict:
        # the fetcher (an event loop and its thread) belongs to one process
        return {**self.__dict__, "_fetcher": None, "_transform": None}

    def process(self, batch: pa.Table) -> pa.Table:
        urls = batch.column(URL).to_pylist()
        cols: dict[str, list] = {k: [None] * len(urls) for k in self.writes}
        outcomes: Counter = Counter()
        body_bytes = 0
        for index, fetched in self._fetcher.fetch(urls):
            outcomes[fetched.outcome] += 1
            body_bytes += len(fetched.body) if fetched.body is not None else 0
            self._record(index, fetched, cols)
        metrics.download_batch(self.name, body_bytes, outcomes)
        return append_columns(batch, {k: pa.array(v, _COLUMN_TYPES[k]) for k, v in cols.items()})

    def decide(self, scored: pa.Table) -> Decision:
        return status_decision(scored, "download_status", "download_error")

    def _record(self, index: int, fetched: Fetched, cols: dict[str, list]) -> None:
        outcome = fetched if fetched.body is None else self._decode(fetched.body)
        cols["download_status"][index], cols["download_error"][index] = outcome.reason, outcome.error
        if fetched.body is not None:
            outcome.fill(cols, index, fetched.body)

    def _decode(self, body: bytes) -> ImageResult:
        """Decode, orient, resize and encode one body (the task's main thread)."""
        return self._transform(body)
