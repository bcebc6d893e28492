"""A small caption-only project for the launcher tests: a corpus and a recipe naming it relative to the
project's directory (as the repository's recipes name data/), with a funnel known in advance."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROWS = 40
RECIPE = "recipes/captions.yaml"


def caption(i: int) -> str:
    """Every 4th too short for LAION (< 5 characters), the next two words only (DataComp wants > 2), the rest kept."""
    return ["ab", "a photo", f"a photo of a cat number {i}", f"a drawing of a dog number {i}"][i % 4]


def write_project(root: Path, input_path: str = "corpus/pairs.parquet") -> Path:
    (root / "corpus").mkdir(parents=True)
    pq.write_table(pa.table({"url": [f"http://example.com/{i}.jpg" for i in range(ROWS)],
                             "caption": [caption(i) for i in range(ROWS)]}), root / "corpus" / "pairs.parquet")
    (root / "recipes").mkdir()
    spec = {"name": "captions", "input": {"path": input_path, "rows_per_unit": 10},
            "stages": [{"stage": "laion_caption"}, {"stage": "datacomp_caption"}],
            "output": {"samples_per_shard": 16, "image_size": 32}}
    (root / RECIPE).write_text(yaml.safe_dump(spec))
    return root / RECIPE


FUNNEL = [
    {"stage": "read", "in": ROWS, "kept": ROWS, "dropped": 0, "reasons": {}},
    {"stage": "laion_caption", "in": ROWS, "kept": 30, "dropped": 10, "reasons": {"caption_too_short": 10}},
    {"stage": "datacomp_caption", "in": 30, "kept": 20, "dropped": 10, "reasons": {"caption_too_few_words": 10}},
]


def funnel_of(run_dir: Path) -> tuple:
    import json

    stats = json.loads((run_dir / "stats" / "stats.json").read_text())
    return stats["rows"], stats["kept"], stats["units"], stats["state"], stats["stages"]


EXPECTED = (ROWS, ROWS // 2, ROWS // 10, "complete", FUNNEL)
