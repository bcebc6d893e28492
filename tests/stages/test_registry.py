"""The stage registry (issue 6 §5): a lazy kind -> "module:Class" table plus the entry-point
group ``curate.stages``. Listing kinds imports no stage family; a caption-only run imports no
torch and none of the image families; a third-party stage is found through a real
``*.dist-info/entry_points.txt`` that importlib.metadata reads from ``sys.path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.stages.registry import BUILTIN, stage_class

# A third-party package: one stage, declared by an installed distribution's entry point.
THIRD_PARTY = '''
import pyarrow as pa
import pyarrow.compute as pc

from curate.stages.base import Decision, Filter


class NoDigitsFilter(Filter):
    """Drops captions that contain a digit."""

    kind = "no_digits"
    reads = ("caption",)

    def process(self, batch):
        return batch

    def decide(self, scored):
        has_digit = pc.match_substring_regex(scored.column("caption"), r"[0-9]")
        return Decision(keep=pc.invert(has_digit), reason=pc.if_else(has_digit, "caption_has_digit", None))
'''


def install_third_party(root: Path, entry_points: str) -> Path:
    """A package ``curate_extra`` and its dist-info under ``root`` (put ``root`` on sys.path)."""
    (root / "curate_extra").mkdir(parents=True)
    (root / "curate_extra" / "__init__.py").write_text(THIRD_PARTY)
    info = root / "curate_extra-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: curate-extra\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


def run_python(code: str, path: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_every_builtin_kind_resolves_to_its_class() -> None:
    for kind, target in BUILTIN.items():
        cls = stage_class(kind)
        assert (cls.kind, f"{cls.__module__}:{cls.__qualname__}") == (kind, target)


def test_listing_the_kinds_imports_no_stage_family() -> None:
    done = run_python("""
        import json, sys
        from curate.stages.registry import stage_kinds
        kinds = list(stage_kinds())
        print(json.dumps([kinds, sorted(m for m in sys.modules if m.startswith("curate.stages."))]))
    """)
    assert done.returncode == 0, done.stderr
    kinds, loaded = json.loads(done.stdout)
    assert kinds == sorted(BUILTIN)
    assert loaded == ["curate.stages.base", "curate.stages.registry"]


def test_a_caption_only_run_imports_no_torch_and_no_image_family(tmp_path: Path) -> None:
    urls = [f"http://example.com/{i % 5}.jpg" for i in range(30)]
    captions = ["a photo of a dog on a beach" if i % 4 else "dog" for i in range(30)]
    pq.write_table(pa.table({"url": urls, "caption": captions}), tmp_path / "in.parquet")
    done = run_python(f"""
        import json, sys
        from curate import run_pipeline
        spec = {{"input": {{"path": "in.parquet", "rows_per_unit": 10}}, "resources": {{"cpus": 1}},
                 "stages": [{{"stage": "laion_caption"}}, {{"stage": "url_dedup"}}]}}
        result = run_pipeline(spec, output={str(tmp_path / 'run')!r})
        heavy = sorted(m for m in ("torch", "open_clip", "img2dataset", "torchvision") if m in sys.modules)
        stages = sorted(m for m in sys.modules if m.startswith("curate.stages."))
        print(json.dumps([result.funnel.kept, heavy, stages]))
    """, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    kept, heavy, stages = json.loads(done.stdout.strip().splitlines()[-1])
    assert kept == 5  # 30 rows, 5 distinct URLs, every URL's first row has a long caption
    assert heavy == []
    assert stages == ["curate.stages.base", "curate.stages.dedup", "curate.stages.registry", "curate.stages.text"]


def test_a_third_party_stage_from_an_entry_point(tmp_path: Path) -> None:
    root = install_third_party(tmp_path / "site", """\
        [curate.stages]
        no_digits = curate_extra:NoDigitsFilter
    """)
    done = run_python("""
        import json
        import pyarrow as pa
        from curate.config import load_spec
        from curate.engine.blocks import apply_stage
        from curate.errors import ConfigError
        spec = {"input": {"path": "in.parquet"}, "stages": [{"stage": "laion_caption"}, {"stage": "no_digits"}]}
        _, stages = load_spec(spec)
        batch = pa.table({"caption": ["route 66 at night", "a road at night"], "_drop_stage": pa.nulls(2, pa.string()),
                          "_drop_reason": pa.nulls(2, pa.string()), "_drop_detail": pa.nulls(2, pa.string())})
        out = apply_stage(stages[1], batch)
        try:
            load_spec({"input": {"path": "in.parquet"}, "stages": [{"stage": "no_digit"}]})
        except ConfigError as err:
            unknown = str(err)
        print(json.dumps([type(stages[1]).__module__, out.column("_drop_reason").to_pylist(), unknown]))
    """, root)
    assert done.returncode == 0, done.stderr
    module, reasons, unknown = json.loads(done.stdout)
    assert module == "curate_extra" and reasons == ["caption_has_digit", None]
    assert unknown.startswith("<dict>: stages[0].stage: unknown stage 'no_digit' "
                              "(valid: aesthetic, align_caption, align_frequency, caption_blocklist, ")
    assert "no_digits" in unknown.removesuffix(")").split(", ")


@pytest.mark.parametrize(("entry_points", "message"), [
    ("[curate.stages]\ndownload = curate_extra:NoDigitsFilter\n",
     "curate-extra declares a curate.stages entry point 'download', the name of a built-in stage (rename it there)"),
    ("[curate.stages]\nno_digits = curate_extra:Missing\n",
     "stage 'no_digits' (curate.stages entry point curate_extra:Missing) cannot be loaded: "
     "module 'curate_extra' has no attribute 'Missing'"),
    ("[curate.stages]\nwrong_kind = curate_extra:NoDigitsFilter\n",
     "stage 'wrong_kind' (curate.stages entry point curate_extra:NoDigitsFilter) must be a curate.stages.base.Stage "
     "subclass with kind = 'wrong_kind'"),
])
def test_a_broken_entry_point_is_a_one_line_user_error(tmp_path: Path, entry_points: str, message: str) -> None:
    root = install_third_party(tmp_path / "site", entry_points)
    kind = entry_points.splitlines()[1].split(" = ")[0]
    done = run_python(f"""
        from curate.config import load_spec
        from curate.errors import UserError
        try:
            load_spec({{"input": {{"path": "in.parquet"}}, "stages": [{{"stage": {kind!r}}}]}})
        except UserError as err:
            print(err)
    """, root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == message
