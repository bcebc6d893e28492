"""``report.html`` on hand-made run directories, whose every file is written here in the run
directory's formats (markers with ``committed_at``, ``seconds`` and ``histograms``, shard tars,
ledgers with ``caption``, ``scores`` (JSON) and ``thumbnail``, thresholds, data cards), so each section's
content is known exactly. The real-run and browser tests are in test_report_e2e.py."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from report_pages import images, section, table_rows

from curate.imaging.thumbnail import thumbnail_jpeg
from curate.stats.histogram import summarise
from curate.stats.report import write_report
from curate.stats.report_data import display_bins, timeline
from curate.stats.samples import dropped_samples

STAGES = ["read", "caption_len", "fetch", "scorer"]
T0 = 1_700_000_000.0


def jpeg(seed: int, size: tuple[int, int] = (200, 150)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.repeat(rng.integers(0, 255, (size[1] // 10 + 1, size[0] // 10 + 1, 3), np.uint8), 10, 0)
    image = Image.fromarray(np.repeat(pixels, 10, 1)[: size[1], : size[0]])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def write_tar(path: Path, samples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            members = {"jpg": sample.pop("_image"), "txt": sample["caption"].encode(), "json": json.dumps(sample).encode()}
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{sample['uid']}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def make_unit(root: Path, unit: int, rows: list[dict], seconds: dict | None, committed_at: float | None,
              ledger_columns: bool = True) -> dict:
    """Write one unit: ``rows`` are ``{uid, caption, clip_score, words, drop: (stage, reason, detail) | None}``
    in input order; scorer drops keep a thumbnail for their first 2 rows (as the writer does)."""
    kept = [r for r in rows if r["drop"] is None]
    dropped = [r for r in rows if r["drop"] is not None]
    files = {}
    if kept:
        tar = root / "shards" / f"{unit:05d}.tar"
        write_tar(tar, [{"uid": r["uid"], "url": f"http://127.0.0.1:1/{r['uid']}.jpg", "caption": r["caption"],
                         "clip_score": r["clip_score"], "words": r["words"], "_image": jpeg(r["seed"])} for r in kept])
        files[f"shards/{unit:05d}.tar"] = tar.stat().st_size
    drops: dict[str, dict[str, int]] = {}
    ledger = []
    pictures: dict[tuple[str, str], int] = {}
    for r in dropped:
        stage, reason, detail = r["drop"]
        drops.setdefault(stage, {}).setdefault(reason, 0)
        drops[stage][reason] += 1
        row = {"uid": r["uid"], "stage": stage, "reason": reason, "detail": detail, "url": f"http://127.0.0.1:1/{r['uid']}",
               "unit": unit, "row": r["row"]}
        if ledger_columns:
            had_image = stage == "scorer"
            taken = pictures.get((stage, reason), 0)
            scores = {"words": r["words"], **({"clip_score": r["clip_score"]} if had_image else {})}
            row.update(caption=r["caption"], scores=json.dumps(scores),
                       thumbnail=thumbnail_jpeg(jpeg(r["seed"])) if had_image and taken < 2 else None)
            pictures[(stage, reason)] = taken + (row["thumbnail"] is not None)
        ledger.append(row)
    if ledger:
        path = root / "rejects" / f"{unit:05d}-0000000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(ledger), path)
        files[f"rejects/{path.name}"] = path.stat().st_size
    marker = {"unit": unit, "rows": len(rows), "kept": len(kept), "drops": drops, "files": files}
    if committed_at is not None:
        marker["committed_at"] = committed_at
    if seconds is not None:
        marker["seconds"] = seconds
        scored = [r["clip_score"] for r in rows if r["drop"] is None or r["drop"][0] == "scorer"]
        marker["histograms"] = {**summarise(pa.table({"clip_score": pa.array(scored, pa.float32())}), ["clip_score"]),
                                **summarise(pa.table({"words": pa.array([r["words"] for r in rows], pa.int32())}), ["words"])}
    (root / "stats" / "units").mkdir(parents=True, exist_ok=True)
    (root / "stats" / "units" / f"{unit:05d}.json").write_text(json.dumps(marker))
    return marker


def unit_rows(unit: int, rare: bool = False) -> list[dict]:
    """10 rows: 2 too short, 1 http_404, 2 (or 3 with ``rare``) dropped by the scorer, the rest kept."""
    rows = []
    for i in range(10):
        uid = f"{unit:04x}{i:028x}"
        score = 0.1 + 0.05 * i
        drop = None
        if i in (0, 1):
            drop = ("caption_len", "too_short", f"chars={i + 1}")
        elif i == 2:
            drop = ("fetch", "http_404", "HTTP 404 File not found")
        elif i in (3, 4):
            drop = ("scorer", "low_score", f"clip_score={score:.2f}<0.30")
        elif rare and i == 5:
            drop = ("scorer", "nan_score", "no score")
        rows.append({"uid": uid, "row": i, "seed": unit * 100 + i, "caption": f"caption {unit}-{i}" if i > 1 else "ab",
                     "clip_score": score, "words": 2 + i, "drop": drop})
    return rows


def write_manifest(root: Path, units: int, state: str = "complete", stages: list[str] = STAGES) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.yaml").write_text("name: handmade\nstages: []\n")
    (root / "manifest.json").write_text(json.dumps({
        "units": units, "stage_order": stages, "state": state, "created": "2026-11-27T10:00:00Z",
        "versions": {"curate": "0.1.0"}}))


def handmade_run(root: Path, units: int = 3, rare_unit: int | None = 2, new_fields: bool = True) -> Path:
    write_manifest(root, units)
    for unit in range(units):
        seconds = {"read": 0.5, "caption_len": 0.1, "fetch": 2.0, "scorer": 1.0} if new_fields else None
        make_unit(root, unit, unit_rows(unit, rare=unit == rare_unit), seconds,
                  T0 + 10 * unit if new_fields else None, ledger_columns=new_fields)
    if new_fields:
        (root / "stats" / "thresholds.json").write_text(json.dumps(
            [{"stage": "scorer", "column": "clip_score", "value": 0.3, "keep": "above"}]))
        (root / "stats" / "scorer.json").write_text(json.dumps(
            {"card": "top_fraction", "stage": "scorer", "column": "clip_score", "fraction": 0.5, "threshold": 0.35,
             "rows_scored": 24, "rows_kept": 12, "kept_fraction": 0.5}))
        (root / "stats" / "groups.json").write_text(json.dumps(
            {"card": "mystery_groups", "stage": "dedup", "groups": [{"size": 2, "count": 5}, {"size": 3, "count": 1}],
             "total": 13}))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    root = handmade_run(tmp_path_factory.mktemp("report") / "run")
    path = write_report(str(root))
    return root, Path(path).read_text()


def test_report_written_beside_the_run(report) -> None:
    root, html = report
    assert (root / "report.html").read_text() == html
    assert html.startswith("<!doctype html>")
    assert "<title>curate report: handmade</title>" in html  # the pipeline's name
    assert f'<p class="meta">{root} · complete · 3 of 3 units · created 2026-11-27T10:00:00Z · curate 0.1.0</p>' in html
    assert 'class="banner"' not in html


def test_funnel_section_counts_every_stage_and_reason(report) -> None:
    _, html = report
    assert table_rows(section(html, "funnel")) == [
        ["stage", "in", "kept", "dropped", "reasons"],
        ["read", "30", "30", "0", ""],
        ["caption_len", "30", "24", "6", "too_short 6"],
        ["fetch", "24", "21", "3", "http_404 3"],
        ["scorer", "21", "14", "7", "low_score 6, nan_score 1"],
    ]
    assert "14 of 30 rows kept" in section(html, "funnel")


def test_a_histogram_per_score_column_with_its_thresholds(report) -> None:
    _, html = report
    scores = section(html, "scores")
    assert re.findall(r"<figcaption>(.*?)</figcaption>", scores) == ["clip_score (21 rows)", "words (30 rows)"]
    clip, words = re.findall(r"<figure.*?</figure>", scores, re.S)
    assert "scorer: keeps above 0.3</text>" in clip and "scorer: top_fraction threshold 0.35</text>" in clip
    assert "<text" in words and "threshold" not in words
    # words 2..11, one row of each per unit: one bar per integer, 3 rows each
    bars = re.findall(r"<title>\[([-\d.]+), ([-\d.]+)\): (\d+)</title>", words)
    assert [(float(lo), float(hi), int(n)) for lo, hi, n in bars] == [(w - 0.5, w + 0.5, 3) for w in range(2, 12)]


def test_drops_over_time_and_throughput(report) -> None:
    _, html = report
    legend = re.findall(r"<text[^>]*>((?:kept|dropped by)[^<]*)</text>", section(html, "timeline"))
    assert legend == ["kept (14)", "dropped by caption_len (6)", "dropped by fetch (3)", "dropped by scorer (7)"]
    assert "2023-11-14 22:13:20 UTC" in section(html, "timeline")
    assert table_rows(section(html, "throughput")) == [
        ["stage", "rows in", "worker-seconds", "rows per worker-second"],
        ["read", "30", "1.5", "20.0"],
        ["caption_len", "30", "0.3", "100.0"],
        ["fetch", "24", "6.0", "4.0"],
        ["scorer", "21", "3.0", "7.0"],
    ]


def test_kept_thumbnails_with_captions_and_scores(report) -> None:
    _, html = report
    kept = section(html, "kept")
    pictures = images(kept)
    assert len(pictures) == 14  # every kept sample of the run (fewer than 24)
    for data in pictures:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and max(image.size) == 128
    assert re.findall(r'<div class="caption">(.*?)</div>', kept)[:2] == ["caption 0-5", "caption 0-6"]
    assert '<div class="scores">clip_score=0.35, words=7</div>' in kept  # the histogram columns only


def test_dropped_samples_pictures_or_text_per_reason(report) -> None:
    _, html = report
    dropped = section(html, "dropped")
    headings = re.findall(r"<h3>(.*?)</h3>", dropped)
    assert headings == ["caption_len: too_short (6 rows)", "fetch: http_404 (3 rows)", "scorer: low_score (6 rows)",
                        "scorer: nan_score (1 rows)"]
    parts = dict(zip(headings, re.split(r"<h3>.*?</h3>", dropped)[1:], strict=True))
    too_short = table_rows(parts["caption_len: too_short (6 rows)"])
    assert [row[2:4] for row in too_short[1:]] == [["ab", "chars=1"], ["ab", "chars=2"]] * 2  # units 0, 1: 4 rows
    assert [row[3] for row in table_rows(parts["fetch: http_404 (3 rows)"])[1:]] == ["HTTP 404 File not found"] * 3
    assert len(images(parts["scorer: low_score (6 rows)"])) == 6  # 2 per unit, 3 units
    assert re.findall(r'<div class="scores">(.*?)</div>', parts["scorer: low_score (6 rows)"])[:2] == [
        "words=5, clip_score=0.25", "words=6, clip_score=0.3"]
    assert re.findall(r'<div class="detail">(.*?)</div>', parts["scorer: low_score (6 rows)"])[:2] == [
        "clip_score=0.25&lt;0.30", "clip_score=0.30&lt;0.30"]
    assert len(images(parts["scorer: nan_score (1 rows)"])) == 1


def test_data_cards_generic_and_known(report) -> None:
    _, html = report
    cards = section(html, "cards")
    assert re.findall(r"<h3>(.*?)</h3>", cards) == ["dedup (mystery_groups)", "scorer (top_fraction)"]
    mystery = cards.split("<h3>")[1]
    assert "<tr><th>size</th><th>count</th></tr><tr><td>2</td><td>5</td></tr><tr><td>3</td><td>1</td></tr>" in mystery
    assert "<p>scorer: top 50% by clip_score: threshold 0.350000, kept 12 of 24 scored (50.0000%)</p>" in cards
    assert "(50.0000%)</p><details><summary>all fields</summary><table><tr><th>stage</th><td>scorer</td></tr>" in cards
    assert "<details>" not in mystery  # a card nothing summarises shows its fields


def test_nothing_on_the_page_leaves_the_file(report) -> None:
    _, html = report
    for attribute, value in re.findall(r'\b(src|href|xlink:href|action)="([^"]*)"', html):
        assert value.startswith(("data:image/jpeg;base64,", "#")), (attribute, value[:60])
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html


def test_captions_and_details_are_escaped(tmp_path) -> None:
    root = tmp_path / "run"
    write_manifest(root, 1, stages=["read", "caption_len"])
    rows = unit_rows(0)[5:7]
    rows[0].update(caption='<script>alert("x")</script><img src="http://example.com/a.png">', drop=None)
    rows[1].update(caption="<b>bold</b>", drop=("caption_len", "too_<short>", "<i>detail</i>"))
    make_unit(root, 0, rows, {"read": 1.0}, T0)
    html = Path(write_report(str(root))).read_text()
    assert "<script" not in html and "<b>bold" not in html and "<i>detail" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=&quot;http://example.com/a.png&quot;&gt;" in html
    assert "caption_len: too_&lt;short&gt; (1 rows)" in html


def test_stages_and_scores_unknown_to_the_report_appear(tmp_path) -> None:
    """The report has no stage or column names in it: a new stage and score show up as they are."""
    root = tmp_path / "run"
    write_manifest(root, 1, stages=["read", "brand_new_stage"])
    rows = unit_rows(0)[:4]
    for row in rows:
        row["drop"] = ("brand_new_stage", "novel_reason", "why") if row["row"] < 2 else None
    marker = make_unit(root, 0, rows, {"read": 1.0, "brand_new_stage": 4.0}, T0)
    marker["histograms"] = summarise(pa.table({"novelty": pa.array([0.5, 0.75, 2.0], pa.float64())}), ["novelty"])
    (root / "stats" / "units" / "00000.json").write_text(json.dumps(marker))
    (root / "stats" / "thresholds.json").write_text(json.dumps(
        [{"stage": "brand_new_stage", "column": "novelty", "value": 0.6, "keep": "below"}]))
    html = Path(write_report(str(root))).read_text()
    assert table_rows(section(html, "funnel"))[2] == ["brand_new_stage", "4", "2", "2", "novel_reason 2"]
    assert re.findall(r"<figcaption>(.*?)</figcaption>", section(html, "scores")) == ["novelty (3 rows)"]
    assert "brand_new_stage: keeps below 0.6</text>" in section(html, "scores")
    assert table_rows(section(html, "throughput"))[2] == ["brand_new_stage", "4", "4.0", "1.0"]
    assert "<h3>brand_new_stage: novel_reason (2 rows)</h3>" in section(html, "dropped")


def test_incomplete_run_gets_a_banner(tmp_path) -> None:
    root = handmade_run(tmp_path / "run", units=2)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "units": 5, "state": "running"}))
    html = Path(write_report(str(root))).read_text()
    assert ('<div class="banner" role="status">run incomplete: interrupted; 2 of 5 units done '
            "(rerun the same `curate run` to finish it)</div>") in html
    assert table_rows(section(html, "funnel"))[1] == ["read", "20", "20", "0", ""]


def test_run_stopped_before_its_first_unit(tmp_path) -> None:
    root = tmp_path / "run"
    write_manifest(root, 4, state="running")
    html = Path(write_report(str(root))).read_text()
    assert "run incomplete: interrupted; 0 of 4 units done" in html
    assert table_rows(section(html, "funnel"))[1:] == [[stage, "0", "0", "0", ""] for stage in STAGES]
    assert '<p class="empty">no kept samples</p>' in html and '<p class="empty">no rows dropped</p>' in html


def test_run_made_before_the_report_fields(tmp_path) -> None:
    """Markers without committed_at, seconds or histograms and ledgers of uid/stage/reason/detail/url
    only (runs made before issue 9): those sections say so, the samples still show."""
    root = handmade_run(tmp_path / "run", new_fields=False)
    html = Path(write_report(str(root))).read_text()
    assert '<p class="empty">no score histograms recorded in the unit markers</p>' in section(html, "scores")
    assert '<p class="empty">no commit times recorded in the unit markers</p>' in section(html, "timeline")
    assert '<p class="empty">no stage timings recorded in the unit markers</p>' in section(html, "throughput")
    assert '<p class="empty">no data cards in stats/</p>' in section(html, "cards")
    assert len(images(section(html, "kept"))) == 14
    assert '<div class="scores">clip_score=0.35, words=7</div>' in section(html, "kept")  # every field: no score list
    dropped = section(html, "dropped")
    assert "<img" not in dropped
    assert re.findall(r"<h3>(.*?)</h3>", dropped)[2] == "scorer: low_score (6 rows)"
    low_score = dropped.split("<h3>scorer: low_score (6 rows)</h3>")[1]
    assert table_rows(low_score)[0] == ["uid", "url", "caption", "detail", "scores"]
    assert [row[3] for row in table_rows(low_score)[1:]] == ["clip_score=0.25<0.30", "clip_score=0.30<0.30"] * 2


def test_ledgers_read_only_for_reasons_still_short(tmp_path) -> None:
    """Units 0-3 give every common reason its samples (http_404 has one row per unit); after them
    only unit 17's ledger (the only one with nan_score) is read: the others are deleted here, and the report still succeeds."""
    root = handmade_run(tmp_path / "run", units=20, rare_unit=17)
    for unit in [*range(4, 17), 18, 19]:
        (root / "rejects" / f"{unit:05d}-0000000.parquet").unlink()
    html = Path(write_report(str(root))).read_text()
    dropped = section(html, "dropped")
    assert len(images(dropped.split("<h3>scorer: low_score (40 rows)</h3>")[1].split("<h3>")[0])) == 6
    nan_score = dropped.split("<h3>scorer: nan_score (1 rows)</h3>")[1]
    assert len(images(nan_score)) == 1


def test_ledger_files_read_are_capped(tmp_path) -> None:
    """low_score needs the ledgers of units 0-2 (2 pictures each), nan_score only unit 17's."""
    root = handmade_run(tmp_path / "run", units=20, rare_unit=17)
    markers = [json.loads(p.read_text()) for p in sorted((root / "stats" / "units").glob("*.json"))]
    drops = {("scorer", "low_score"): 40, ("scorer", "nan_score"): 1}

    def pictures(max_files: int) -> list[int]:
        return [len(group.pictures) for group in dropped_samples(str(root), markers, drops, max_files=max_files)]

    assert pictures(2) == [4, 0]
    assert pictures(3) == [6, 0]
    assert pictures(4) == [6, 1]


def test_display_bins_integers_logs_and_floats() -> None:
    from curate.stats.histogram import bin_edges

    def bins(values, dtype):
        merged = summarise(pa.table({"x": pa.array(values, dtype)}), ["x"])["x"]
        lows, highs = bin_edges(np.array(merged["keys"]))
        return display_bins(lows, highs, np.array(merged["counts"]))

    words = bins([3, 3, 4, 9], pa.int32())
    assert (words.lows, words.counts, words.log_x) == ([2.5 + i for i in range(7)], [2, 1, 0, 0, 0, 0, 1], False)
    sizes = bins([1_000, 50_000, 4_000_000], pa.int64())
    assert sizes.log_x and len(sizes.counts) == 40 and sum(sizes.counts) == 3
    assert sizes.lows[0] <= 1_000 and sizes.highs[-1] > 4_000_000
    scores = bins(np.linspace(0.1, 0.4, 1000), pa.float32())
    assert not scores.log_x and len(scores.counts) == 40 and sum(scores.counts) == 1000
    assert set(scores.counts[1:-1]) <= {24, 25, 26}  # a flat distribution stays flat (its first and last bars are partial)


def test_timeline_keeps_a_bounded_number_of_points() -> None:
    markers = [{"unit": u, "rows": 10, "kept": 7, "drops": {"f": {"r": 3}}, "committed_at": T0 + u} for u in range(1000)]
    line = timeline(list(reversed(markers)), ["read", "f"])
    assert len(line.seconds) == 400 and line.seconds[0] == 0 and line.seconds[-1] == 999
    assert line.kept[-1] == 7000 and line.dropped == {"f": line.dropped["f"]} and line.dropped["f"][-1] == 3000


def test_drops_over_time_in_minutes_for_a_long_run() -> None:
    from curate.stats.report_html import timeline_section

    markers = [{"unit": u, "rows": 10, "kept": 7, "drops": {"f": {"r": 3}}, "committed_at": T0 + 72 * u} for u in range(101)]
    kept, dropped = re.findall(r"<figure.*?</figure>", timeline_section(timeline(markers, ["read", "f"])), re.S)
    assert "<figcaption>rows dropped per stage, cumulative, as units committed</figcaption>" in dropped
    html = kept
    assert "minutes since the first unit committed (2023-11-14 22:13:20 UTC)</text>" in html
    ticks = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">(\d+)</text>', html)
    assert ticks == ["0", "20", "40", "60", "80", "100", "120"]
