"""``report.html`` of a real run (the synthetic corpus with images through caption, language,
dedup, download and image stages on the session's Ray), read back against the run's own files, and
loaded in Debian's chromium, headless and offline."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from html import unescape
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from report_pages import images, section, table_rows

from curate.cli import main
from curate.pipeline import run_pipeline
from curate.stats.histogram import merge
from curate.stats.report import write_report

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, synth_corpus, ray_session) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("report_e2e")
    spec = {
        "name": "report",
        "input": {"path": str(synth_corpus / "samples.parquet"), "serve": str(synth_corpus), "rows_per_unit": 100,
                  "keep_columns": ["noise"]},
        "stages": [
            {"stage": "laion_caption"},
            {"stage": "datacomp_caption"},
            {"stage": "language_id", "languages": ["en"], "min_prob": 0.5},
            {"stage": "url_dedup"},
            {"stage": "download", "timeout": 10, "threads": 16},
            {"stage": "datacomp_image"},
            {"stage": "laion_image"},
        ],
        "output": {"samples_per_shard": 100, "image_size": 64, "resize_mode": "center_crop", "encode_quality": 80},
    }
    run = root / "run"
    result = run_pipeline(spec, output=str(run))
    out = root / "report.html"
    write_report(str(run), str(out))
    ledger = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]).to_pylist()
    markers = [json.loads(p.read_text()) for p in sorted((run / "stats" / "units").glob("*.json"))]
    return SimpleNamespace(run=run, funnel=result.funnel.to_json(), report=out, html=out.read_text(), ledger=ledger,
                           markers=markers)


def test_every_run_writes_its_report(real_run) -> None:
    assert (real_run.run / "report.html").read_text() == real_run.html


def test_report_command(real_run, tmp_path, capsys) -> None:
    out = tmp_path / "again.html"
    assert main(["report", str(real_run.run), "--out", str(out)]) == 0
    assert capsys.readouterr().err == f"wrote {out}\n"
    assert out.read_text() == real_run.html


def test_funnel_is_the_runs(real_run) -> None:
    expected = [["stage", "in", "kept", "dropped", "reasons"]] + [
        [s["stage"], f"{s['in']:,}", f"{s['kept']:,}", f"{s['dropped']:,}",
         ", ".join(f"{r} {n:,}" for r, n in s["reasons"].items())] for s in real_run.funnel["stages"]]
    assert table_rows(section(real_run.html, "funnel")) == expected


def test_a_histogram_per_score_column(real_run) -> None:
    merged = merge(m["histograms"] for m in real_run.markers)
    scores = section(real_run.html, "scores")
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", scores)
    cut = {t["column"] for t in json.loads((real_run.run / "stats" / "thresholds.json").read_text())}
    assert cut == {"caption_chars", "caption_words", "lang_prob", "aspect_ratio", "orig_bytes"}
    assert [c.split(" (")[0] for c in captions] == sorted(merged, key=lambda c: (c not in cut, c))  # cut scores first
    assert {"lang_prob", "caption_words", "width", "orig_bytes"} <= set(merged)
    for caption, figure in zip(captions, re.findall(r"<figure.*?</figure>", scores, re.S), strict=True):
        column = caption.split(" (")[0]
        bars = [int(n) for n in re.findall(r"<title>\[[^)<]*\): (\d+)</title>", figure)]
        assert sum(bars) == int(merged[column][1].sum()), column
        assert caption.startswith(f"{column} ({int(merged[column][1].sum()):,} rows")
    language = next(s for s in real_run.funnel["stages"] if s["stage"] == "language_id")
    lang_prob = re.search(r"<figure[^>]*><figcaption>lang_prob .*?</figure>", scores, re.S).group(0)
    assert f"lang_prob ({language['in']:,} rows)" in lang_prob  # every row that reached the stage
    assert "language_id: keeps above 0.5</text>" in lang_prob


def test_over_time_and_throughput_follow_the_funnel(real_run) -> None:
    legend = re.findall(r"<text[^>]*>((?:kept|dropped by)[^<]*)</text>", section(real_run.html, "timeline"))
    assert legend == [f"kept ({real_run.funnel['kept']:,})"] + [
        f"dropped by {s['stage']} ({s['dropped']:,})" for s in real_run.funnel["stages"] if s["dropped"]]
    rows_in = {s["stage"]: f"{s['in']:,}" for s in real_run.funnel["stages"]}
    timed = {stage for m in real_run.markers for stage in m["seconds"]}
    rates = table_rows(section(real_run.html, "throughput"))[1:]
    assert [row[0] for row in rates] == [s for s in rows_in if s in timed]
    assert all(row[1] == rows_in[row[0]] for row in rates)


def test_kept_thumbnails_are_the_first_shards_samples(real_run) -> None:
    kept = section(real_run.html, "kept")
    first = pq.read_table(real_run.run / "shards" / "00000.parquet", columns=["caption"]).column("caption").to_pylist()
    assert [unescape(c) for c in re.findall(r'<div class="caption">(.*?)</div>', kept)] == first[:24]
    pictures = images(kept)
    assert len(pictures) == 24
    for data in pictures:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.size == (64, 64)  # the shard's 64 px images, not enlarged


def test_dropped_samples_of_every_reason(real_run) -> None:
    dropped = section(real_run.html, "dropped")
    headings = re.findall(r"<h3>(.*?)</h3>", dropped)
    assert headings == [f"{s['stage']}: {reason} ({n:,} rows)" for s in real_run.funnel["stages"]
                        for reason, n in s["reasons"].items()]
    by_uid = {row["uid"]: row for row in real_run.ledger}
    pictured = Counter((row["stage"], row["reason"]) for row in real_run.ledger if row["thumbnail"] is not None)
    for heading, part in zip(headings, re.split(r"<h3>.*?</h3>", dropped)[1:], strict=True):
        stage, reason = heading.split(" (")[0].split(": ")
        if pictured[(stage, reason)]:  # image stages: the ledger's pictures, up to 6
            assert len(images(part)) == min(6, pictured[(stage, reason)]), heading
            continue
        rows = table_rows(part)[1:]
        assert rows and len(rows) <= 4, heading
        for uid, url, caption, detail, _ in rows:
            entry = by_uid[uid]
            assert (entry["stage"], entry["reason"], entry["url"], entry["caption"], entry["detail"]) == (
                stage, reason, url, caption, detail)
    assert pictured[("datacomp_image", "image_too_small")] > 0  # the run did have pictured reasons


def _load_in_chromium(path: Path, screenshot: Path) -> dict:
    """Open ``path`` in headless chromium with the network off; every request that is not the file
    itself is recorded and refused."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    seen: dict = {"requests": [], "errors": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.on("request", lambda request: request.url != url and seen["requests"].append(request.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
            page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
            page.on("pageerror", lambda error: seen["errors"].append(str(error)))
            page.goto(url, wait_until="load")
            seen["charts"] = page.evaluate("""() => [...document.querySelectorAll('svg.chart')].map(svg => {
                const box = svg.getBoundingClientRect();
                return [box.width, box.height, svg.querySelectorAll('rect, polyline, line').length]; })""")
            seen["images"] = page.evaluate("() => [...document.images].map(i => [i.complete, i.naturalWidth])")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_offline_in_chromium(real_run, tmp_path) -> None:
    seen = _load_in_chromium(real_run.report, tmp_path / "report.png")
    assert seen["requests"] == [] and seen["errors"] == []
    charts = len(re.findall(r'<svg class="chart"', real_run.html))
    assert len(seen["charts"]) == charts >= 4  # funnel, histograms, over time, throughput
    assert all(width > 0 and height > 0 and marks > 0 for width, height, marks in seen["charts"]), seen["charts"]
    assert len(seen["images"]) == len(images(real_run.html)) > 24
    assert all(complete and width > 0 for complete, width in seen["images"])
    with Image.open(tmp_path / "report.png") as shot:
        assert shot.width == 1200 and shot.height > 900


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_browser_check_sees_what_it_must_refuse(tmp_path) -> None:
    """The checks above can fail: a page with an outside image, a broken thumbnail and a script
    error is caught on each count."""
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><body><svg class="chart" viewBox="0 0 10 10"></svg>'
                    '<img src="http://127.0.0.1:9/outside.png"><img src="data:image/jpeg;base64,AAAA">'
                    "<script>missing_function()</script></body></html>")
    seen = _load_in_chromium(page, tmp_path / "bad.png")
    assert seen["requests"] == ["http://127.0.0.1:9/outside.png"]
    assert any("missing_function" in error for error in seen["errors"])
    assert [marks for *_, marks in seen["charts"]] == [0]
    assert [width for _, width in seen["images"]] == [0, 0]
