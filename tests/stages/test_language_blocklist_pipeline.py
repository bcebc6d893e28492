"""language_id and caption_blocklist in a real pipeline through Ray: the model and the
automaton are built in each actor's setup (nothing unpicklable travels), the ledger names
each drop exactly, and the kept samples carry the score columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.pipeline import run_pipeline

ROWS = [  # caption, (stage, reason, detail) of the expected drop or None when kept
    ("The cat sleeps on the red sofa", None),
    ("Ceci est une phrase en français", ("language_id", "language_not_kept", "lang=fr")),
    ("A first class seat on the train", None),
    ("A photo of an ass standing in the field near the farm", ("caption_blocklist", "blocklisted_en", "entry=ass")),
    ("The dog runs in the\ngreen park", None),
    (None, ("language_id", "language_not_kept", "lang=und")),
    ("Kids play with a ball gag in the yard", ("caption_blocklist", "blocklisted_en", "entry=ball gag")),
]


def test_language_and_blocklist_stages_in_a_pipeline(ray_session, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({
        "url": [f"http://127.0.0.1:9/{i}.jpg" for i in range(len(ROWS))],
        "caption": pa.array([caption for caption, _ in ROWS], pa.string()),
    }), source)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "en").write_text("ass\nball gag\n", encoding="utf-8")
    spec = {
        "name": "lang_block",
        "input": {"path": str(source), "rows_per_unit": 4},
        "stages": [
            {"stage": "language_id", "languages": ["en"]},
            {"stage": "caption_blocklist", "lists": str(lists)},
        ],
    }
    run = tmp_path / "run"
    result = run_pipeline(spec, output=str(run))
    rejects = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]).to_pylist()
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))]).to_pylist()
    assert result.funnel.rows == len(ROWS) and len(rejects) + len(kept) == len(ROWS)
    assert sorted((r["stage"], r["reason"], r["detail"]) for r in rejects) == sorted(e for _, e in ROWS if e)
    assert sorted(k["caption"] for k in kept) == sorted(c for c, e in ROWS if e is None)
    assert {k["lang"] for k in kept} == {"en"} and all(0.0 < k["lang_prob"] <= 1.0 for k in kept)
    assert [k["blocklist_match"] for k in kept] == [None] * 3
