"""The download stage against the loopback server of ``tests/http_fixtures.py``: one exact
reason per failure mode, the hard deadline, retries, resizing, and the decoder guards."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from http_fixtures import GOOD_SIZE, WIDE_SIZE, good_jpeg
from PIL import Image

from curate.errors import ConfigError
from curate.stages.download import DownloadParams, DownloadStage, ImageOutput, is_transient

TIMEOUT = 1.0
LOOPBACK = ["127.0.0.0/8"]  # the test server's range: loopback is refused unless allowed


def make_stage(output: ImageOutput | None = None, **params) -> DownloadStage:
    stage = DownloadStage(DownloadParams(**{"timeout": TIMEOUT, "threads": 16, "allow_private": LOOPBACK, **params}))
    stage.image_output = output or ImageOutput(image_size=64)
    stage.setup()
    return stage


def download(stage: DownloadStage, urls: list[str | None]) -> list[dict]:
    out = stage.process(pa.table({"url": pa.array(urls, pa.string())}))
    assert out.num_rows == len(urls)
    assert out.column("url").to_pylist() == urls  # same rows, same order
    return out.to_pylist()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_route_gets_its_exact_reason(http_server) -> None:
    routes = {
        "/good/a.jpg": (None, None),
        "/redirect": (None, None),
        "/404": ("http_404", "HTTP 404 Not Found"),
        "/no/such/route": ("http_404", "HTTP 404 Not Found"),
        "/503": ("http_503", "HTTP 503 Service Unavailable"),
        "/slow": ("timeout", None),
        "/trickle": ("timeout", None),
        "/html": ("not_an_image", None),
        "/truncated.jpg": ("truncated_image", "OSError: image file is truncated (193 bytes not processed)"),
        "/noai.jpg": ("x_robots_tag", "use of image disallowed by X-Robots-Tag directive"),
        "/bomb.png": ("decompression_bomb", None),
    }
    stage = make_stage()
    urls = [http_server.url(path) for path in routes]
    refused = f"http://127.0.0.1:{closed_port()}/x.jpg"
    rows = download(stage, [*urls, refused, "", None, "not a url"])
    for (path, (reason, error)), row in zip(routes.items(), rows, strict=False):
        assert row["download_status"] == reason, (path, row["download_error"])
        if error is not None:
            assert row["download_error"] == error, path
        if reason is None:
            assert row["download_error"] is None and row["image"] is not None
        else:
            assert row["download_error"], path  # every failure says why
            assert row["image"] is None and row["width"] is None and row["height"] is None
    tail = rows[len(routes):]
    assert [r["download_status"] for r in tail] == ["connection_refused", "bad_url", "bad_url", "bad_url"]
    assert tail[1]["download_error"] == tail[2]["download_error"] == "empty URL"
    # bodies that arrived are measured even when rejected; failures before the body are not
    by_path = dict(zip(routes, rows, strict=False))
    assert by_path["/html"]["orig_bytes"] == len(b"<!doctype html><html><body><h1>Not an image</h1></body></html>")
    assert by_path["/404"]["orig_bytes"] is None and by_path["/noai.jpg"]["orig_bytes"] is None
    # the redirect was followed to a good image, kept with its original URL
    assert (by_path["/redirect"]["orig_width"], by_path["/redirect"]["orig_height"]) == GOOD_SIZE
    assert by_path["/redirect"]["url"] == http_server.url("/redirect")


def test_decide_turns_status_into_keep_mask_reason_and_detail(http_server) -> None:
    stage = make_stage()
    urls = [http_server.url(p) for p in ("/good/b.jpg", "/404", "/html")]
    decision = stage.decide(stage.process(pa.table({"url": urls})))
    assert decision.keep.to_pylist() == [True, False, False]
    assert decision.reason.to_pylist() == [None, "http_404", "not_an_image"]
    detail = decision.detail.to_pylist()
    assert detail[0] is None and detail[1] == "HTTP 404 Not Found" and detail[2].startswith("UnidentifiedImageError")


def test_not_an_image_detail_is_stable(http_server) -> None:
    """The ledger detail must not carry a memory address (reruns give identical ledgers)."""
    stage = make_stage()
    first, second = download(stage, [http_server.url("/html")] * 2)
    assert first["download_error"] == second["download_error"]
    assert " at 0x" not in first["download_error"]


def test_trickle_is_cut_by_the_hard_deadline(http_server) -> None:
    stage = make_stage(timeout=TIMEOUT)
    started = time.monotonic()
    (row,) = download(stage, [http_server.url("/trickle")])
    elapsed = time.monotonic() - started
    assert row["download_status"] == "timeout"
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2.5, elapsed


def test_slow_headers_time_out(http_server) -> None:
    stage = make_stage()
    started = time.monotonic()
    (row,) = download(stage, [http_server.url("/slow")])
    assert row["download_status"] == "timeout"
    assert time.monotonic() - started < TIMEOUT + 2.5


@pytest.mark.parametrize(("retries", "fail", "status", "hits"), [
    (0, 2, "http_503", 1),
    (1, 2, "http_503", 2),
    (2, 2, None, 3),
    (5, 1, None, 2),
])
def test_retries_make_the_flaky_route_succeed(http_server, retries, fail, status, hits) -> None:
    http_server.reset()
    path = f"/flaky/r{retries}-f{fail}.jpg"
    (row,) = download(make_stage(retries=retries), [http_server.url(f"{path}?fail={fail}")])
    assert row["download_status"] == status
    assert http_server.hits[path] == hits
    if status is None:
        assert (row["orig_width"], row["orig_height"]) == GOOD_SIZE


def test_permanent_failures_are_not_retried(http_server) -> None:
    http_server.reset()
    rows = download(make_stage(retries=3), [http_server.url("/404"), http_server.url("/html")])
    assert [r["download_status"] for r in rows] == ["http_404", "not_an_image"]
    assert http_server.hits["/404"] == 1 and http_server.hits["/html"] == 1


@pytest.mark.parametrize(("reason", "transient"), [
    ("timeout", True),
    ("connection_reset", True),
    ("http_500", True),
    ("http_503", True),
    ("http_599", True),
    ("http_429", True),
    ("http_404", False),
    ("http_403", False),
    ("http_5000", False),
    ("connection_refused", False),
    ("dns_error", False),
    ("bad_url", False),
    ("not_an_image", False),
    ("truncated_image", False),
    ("decompression_bomb", False),
    ("x_robots_tag", False),
    ("", False),
    (None, False),
])
def test_is_transient(reason, transient) -> None:
    assert is_transient(reason) is transient


@pytest.mark.parametrize(("output", "good", "wide"), [
    (ImageOutput(image_size=64, resize_mode="border"), (64, 64), (64, 64)),
    (ImageOutput(image_size=64, resize_mode="center_crop"), (64, 64), (64, 64)),
    (ImageOutput(image_size=64, resize_mode="keep_ratio"), (85, 64), (288, 64)),
    (ImageOutput(image_size=64, resize_mode="keep_ratio_largest"), (64, 48), (64, 14)),
    (ImageOutput(image_size=64, resize_mode="no"), GOOD_SIZE, WIDE_SIZE),
    (ImageOutput(image_size=512, resize_mode="border", resize_only_if_bigger=True), GOOD_SIZE, (512, 512)),
])
def test_output_columns_follow_the_output_settings(http_server, output, good, wide) -> None:
    stage = make_stage(output)
    out = stage.process(pa.table({"url": [http_server.url("/good/size.jpg"), http_server.url("/wide.jpg")]}))
    types = {name: str(out.schema.field(name).type) for name in stage.writes}
    assert types == {"image": "binary", "width": "int32", "height": "int32", "orig_width": "int32", "orig_height": "int32",
                     "orig_bytes": "int64", "orig_hash": "int64", "pixel_hash": "int64", "orig_format": "string",
                     "download_status": "string",
                     "download_error": "string"}
    rows = out.to_pylist()
    for row, size, orig in zip(rows, (good, wide), (GOOD_SIZE, WIDE_SIZE), strict=True):
        assert (row["width"], row["height"]) == size
        assert (row["orig_width"], row["orig_height"]) == orig
        with Image.open(io.BytesIO(row["image"])) as image:
            assert image.format == "JPEG" and image.size == size
    assert rows[0]["orig_bytes"] > 5000


@pytest.mark.parametrize(("image_format", "pil_format"), [("png", "PNG"), ("webp", "WEBP")])
def test_output_format(http_server, image_format, pil_format) -> None:
    stage = make_stage(ImageOutput(image_size=32, image_format=image_format))
    (row,) = download(stage, [http_server.url("/good/fmt.jpg")])
    with Image.open(io.BytesIO(row["image"])) as image:
        assert image.format == pil_format and image.size == (32, 32)


def test_decompression_bomb_guard(http_server) -> None:
    # a header declaring 30000 x 30000 is refused without decoding
    (bomb,) = download(make_stage(), [http_server.url("/bomb.png")])
    assert bomb["download_status"] == "decompression_bomb" and bomb["orig_width"] is None
    assert "900000000 pixels" in bomb["download_error"]  # PIL's own hard limit refuses it at open
    # the budget counts the bytes the decode allocates: a 400x300 JPEG for a 64 px output is
    # DCT-decoded at 1/4, 100x75 pixels of 4 bytes (PIL) + 3 bytes (the RGB array) = 52,500
    # bytes; exactly that is fine, a byte less is not
    width, height = GOOD_SIZE
    (at_limit,) = download(make_stage(max_decoded_bytes=52_500), [http_server.url("/good/bomb.jpg")])
    assert at_limit["download_status"] is None and (at_limit["orig_width"], at_limit["orig_height"]) == GOOD_SIZE
    (over_limit,) = download(make_stage(max_decoded_bytes=52_499), [http_server.url("/good/bomb.jpg")])
    assert over_limit["download_status"] == "decompression_bomb" and over_limit["image"] is None
    assert over_limit["download_error"] == f"{width}x{height} RGB needs 52500 bytes to decode at 100x75 > max_decoded_bytes=52499"


def test_max_bytes(http_server) -> None:
    http_server.reset()
    (row,) = download(make_stage(max_bytes=1000), [http_server.url("/good/big.jpg")])
    length = len(good_jpeg("big.jpg"))
    assert row["download_status"] == "too_large"
    assert row["download_error"] == f"body larger than 1000 bytes (Content-Length {length})"
    assert row["orig_bytes"] is None
    # the default cap is 20 MB: a larger Content-Length is refused before reading; without one,
    # reading stops at the cap
    rows = download(make_stage(timeout=10), [http_server.url("/big?mb=21"), http_server.url("/big?mb=21&length=no")])
    assert [(r["download_status"], r["download_error"]) for r in rows] == [
        ("too_large", "body larger than 20000000 bytes (Content-Length 21000000)"),
        ("too_large", "body larger than 20000000 bytes")]
    (row,) = download(make_stage(timeout=10), [http_server.url("/big?mb=19&length=no")])
    assert (row["download_status"], row["orig_bytes"]) == ("not_an_image", 19_000_000)


def test_x_robots_tag_can_be_ignored(http_server) -> None:
    (row,) = download(make_stage(disallowed_header_directives=[]), [http_server.url("/noai.jpg")])
    assert row["download_status"] is None
    (row,) = download(make_stage(disallowed_header_directives=["noindex"]), [http_server.url("/noai.jpg")])
    assert row["download_status"] is None


def test_relative_urls_resolve_against_base_url(http_server) -> None:
    stage = make_stage(base_url=http_server.url("/"))
    rows = download(stage, ["good/relative.jpg", "404", http_server.url("/good/absolute.jpg")])
    assert [r["download_status"] for r in rows] == [None, "http_404", None]


@pytest.mark.shared_data
def test_odd_images_decode_or_get_a_reason(shared_data: Path) -> None:
    from curate.io.http_server import serve_directory

    folder = shared_data / "odd-images"
    if not folder.is_dir():
        pytest.skip(f"needs {folder}")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    stage = make_stage(ImageOutput(image_size=64), timeout=10.0)
    with serve_directory(folder) as base:
        rows = download(stage, [base + name for name in names])
    decoded = 0
    for name, row in zip(names, rows, strict=True):
        if row["download_status"] is None:
            decoded += 1
            assert row["image"] is not None and (row["width"], row["height"]) == (64, 64), name
            assert row["orig_width"] > 0 and row["orig_height"] > 0, name
            with Image.open(io.BytesIO(row["image"])) as image:
                assert image.size == (64, 64)
        else:
            assert row["image"] is None and row["download_error"], name
            assert row["download_status"] in {"not_an_image", "truncated_image", "undecodable", "decompression_bomb"}, name
    assert decoded >= len(names) // 2
    corrupt = dict(zip(names, rows, strict=True)).get("ukbench09268_corrupt.jpg")
    if corrupt is not None:
        assert corrupt["download_status"] is not None


def finishes(stage: DownloadStage, urls: list[str], within: float) -> list[dict]:
    """``download`` in a thread; fails (instead of hanging the suite) when it has not returned
    ``within`` seconds: a hang detector with a generous bound, not a timing test."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(download(stage, urls)), daemon=True)
    worker.start()
    worker.join(within)
    assert result, f"download of {len(urls)} URLs still running after {within}s"
    return result[0]


def test_hostile_servers_never_cost_a_good_url(http_server) -> None:
    """Issue 5 §1: 64 URLs whose headers drip one byte at a time and 64 that never answer, ahead
    of good URLs in one batch, with the default threads: the old client hung forever here."""
    stage = make_stage(threads=DownloadParams().threads)
    good = [http_server.url(f"/good/h{i}.jpg") for i in range(32)]
    urls = [http_server.url("/drip-headers")] * 64 + [http_server.url("/silent")] * 64 + good
    rows = finishes(stage, urls, within=30)
    assert {(r["download_status"], r["download_error"]) for r in rows[:128]} == {("timeout", "no complete answer within 1s")}
    assert [r["download_status"] for r in rows[128:]] == [None] * len(good)


def test_slow_decoding_is_not_charged_to_the_network(http_server, monkeypatch) -> None:
    """Issue 5 §1: while one body took seconds to decode, URLs that had answered in time were
    recorded as ``timeout (abandoned)``; decoding must not count against their deadline."""
    stage = make_stage(threads=64)
    decode = stage._decode
    calls: list[int] = []

    def slow_first(body: bytes):
        calls.append(len(body))
        if len(calls) == 1:
            time.sleep(3 * TIMEOUT)
        return decode(body)

    monkeypatch.setattr(stage, "_decode", slow_first)
    rows = download(stage, [http_server.url(f"/good/s{i}.jpg") for i in range(16)])
    assert [r["download_status"] for r in rows] == [None] * 16
    assert len(calls) == 16


def test_retry_after_is_honoured(http_server) -> None:
    http_server.reset()
    (row,) = download(make_stage(retries=1, backoff=0.0), [http_server.url("/busy/a.jpg?fail=1&after=2")])
    assert row["download_status"] is None
    first, second = http_server.times["/busy/a.jpg"]
    assert second - first >= 2.0  # the server asked for 2 s; without Retry-After the retry was immediate
    # a Retry-After beyond max_retry_wait is capped, not obeyed
    (row,) = finishes(make_stage(retries=1, backoff=0.0, max_retry_wait=0.1), [http_server.url("/busy/b.jpg?fail=1&after=3600")],
                      within=30)
    assert row["download_status"] is None and http_server.hits["/busy/b.jpg"] == 2
    # a 503 without retries left is the ledger's reason
    (row,) = download(make_stage(retries=0), [http_server.url("/busy/c.jpg?fail=1&after=1")])
    assert (row["download_status"], row["download_error"]) == ("http_503", "HTTP 503 Service Unavailable")


_RSS_PROBE = """
import json, resource, sys
import pyarrow as pa
from curate.stages.download import DownloadParams, DownloadStage, ImageOutput
stage = DownloadStage(DownloadParams(timeout=60, max_bytes=64_000_000, buffer_bytes=128_000_000, allow_private=["127.0.0.0/8"]))
stage.image_output = ImageOutput(image_size=64)
stage.setup()
stage.process(pa.table({"url": ["http://127.0.0.1:1/warm-up.jpg"]}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = stage.process(pa.table({"url": [sys.argv[1] + f"/big?mb=49&i={i}" for i in range(64)]}))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024, "status": sorted(set(out.column("download_status").to_pylist())),
                  "bytes": sorted(set(out.column("orig_bytes").to_pylist()))}))
"""


@pytest.mark.slow  # 3.1 GB through loopback: 10-30 s on 2 busy cores
def test_body_memory_is_bounded(http_server) -> None:
    """Issue 5 §4: 64 bodies of 49 MB took a worker to 5.4 GB (the old client buffered every
    body at once: +4.9 GB measured). Bound: the 128 MB budget (two 49 MB bodies reserved: one
    being decoded, one being read into a growing buffer, ~12% over-allocated), plus that body's
    copy out of its buffer (49 MB), plus 96 MB for the client's buffers and allocator slack.
    Measured: +232 MB."""
    done = subprocess.run([sys.executable, "-c", _RSS_PROBE, http_server.base], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["status"] == ["not_an_image"] and result["bytes"] == [49_000_000]
    assert result["growth_mb"] < 128 + 49 + 96, result


def test_urls_with_spaces_are_fetched_as_a_browser_would(http_server) -> None:
    http_server.reset()
    rows = download(make_stage(), [http_server.url("/good/a photo.jpg"), http_server.url('/good/"quoted" <b>.jpg')])
    assert [r["download_status"] for r in rows] == [None, None]
    assert http_server.hits["/good/a%20photo.jpg"] == 1 and http_server.hits["/good/%22quoted%22%20%3Cb%3E.jpg"] == 1


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("timeout", float("inf"), "Input should be a finite number"),
    ("timeout", 1e9, "Input should be less than or equal to 600"),
    ("threads", 10**9, "Input should be less than or equal to 1024"),
    ("max_bytes", 10**12, "Input should be less than or equal to 1000000000"),
    ("allow_private", ["everything"], "'everything' is not a CIDR network"),
])
def test_unbounded_settings_are_one_line_config_errors(key, value, problem) -> None:
    from curate.config import load_spec

    spec = {"name": "x", "input": {"path": "in.parquet"}, "stages": [{"stage": "download", key: value}]}
    with pytest.raises(ConfigError) as caught:
        load_spec(spec)
    message = str(caught.value)
    assert "\n" not in message and f"stages[0].{key}" in message and problem in message, message
