"""Pipeline spec validation (curate.config): every mistake is a one-line ConfigError naming
the file, the key and the fix; overrides; the fingerprint that guards resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import PipelineSpec, build_stages, load_spec, parse_spec
from curate.errors import ConfigError, UserError
from curate.stages.dedup import UrlDedupFilter
from curate.stages.download import DownloadStage
from curate.stages.text import DataCompCaptionFilter, LaionCaptionFilter

GOOD_YAML = """\
name: demo
input:
  path: data/in.parquet
  keep_columns: [license]
stages:
  - stage: laion_caption
  - stage: datacomp_caption
    name: dc
    min_words: 4
  - stage: url_dedup
  - stage: download
    params: {timeout: 3, retries: 1}
output:
  samples_per_shard: 100
  image_size: 64
"""


def write(tmp_path: Path, text: str, name: str = "pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(source, overrides: list[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_spec(source, overrides)
    message = str(info.value)
    assert "\n" not in message
    return info.value


def base(**extra) -> dict:
    return {"input": {"path": "in.parquet"}, **extra}


def test_good_yaml(tmp_path: Path) -> None:
    spec, stages = load_spec(write(tmp_path, GOOD_YAML))
    assert isinstance(spec, PipelineSpec) and spec.name == "demo"
    assert [type(s) for s in stages] == [LaionCaptionFilter, DataCompCaptionFilter, UrlDedupFilter, DownloadStage]
    assert [s.name for s in stages] == ["laion_caption", "dc", "url_dedup", "download"]
    assert stages[1].params.min_words == 4 and stages[1].params.min_chars == 6
    assert (stages[3].params.timeout, stages[3].params.retries, stages[3].params.threads) == (3.0, 1, 64)
    assert spec.input.keep_columns == ["license"] and spec.input.rows_per_unit == 10_000
    assert (spec.output.samples_per_shard, spec.output.image_size, spec.output.resize_mode) == (100, 64, "border")


def test_the_shipped_quickstart_validates(tmp_path, monkeypatch) -> None:
    """As ``curate run`` checks it: the synthetic corpus (with the blocklist it carries) made first."""
    from curate.pipeline import _ensure_synth

    monkeypatch.chdir(tmp_path)  # the quickstart's paths are relative: data/synth/...
    spec = parse_spec(Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml", ["input.synth.n=20"])
    _ensure_synth(spec)
    stages = build_stages(spec)
    assert spec.name == "quickstart" and "caption_blocklist" in [s.kind for s in stages]


def test_bad_yaml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\ninput:\n  path: [unclosed\nstages: []\n")
    err = error_of(path)
    assert str(err).startswith(f"{path}: line ")
    assert "invalid YAML" in str(err) and "fix the syntax" in str(err)
    assert isinstance(err, UserError) and err.exit_code == 2


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert str(error_of(path)) == f"{path}: <file>: expected a mapping at the top level (see pipelines/quickstart.yaml)"


def test_missing_pipeline_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert str(error_of(path)) == f"{path}: <file>: no such pipeline file (check the path)"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_YAML + "outptu: {}\n")
    assert str(error_of(path)) == f"{path}: outptu: unknown key (valid: name, input, stages, output, resources, metrics)"


def test_unknown_nested_key() -> None:
    err = error_of(base(output={"size": 3}))
    assert err.key == "output.size" and err.problem == "unknown key"
    assert err.fix.startswith("valid: path, samples_per_shard, image_size")


def test_unknown_stage_lists_valid_stages() -> None:
    err = error_of(base(stages=[{"stage": "laion_caption"}, {"stage": "clip_scroe"}]))
    assert err.key == "stages[1].stage" and err.problem == "unknown stage 'clip_scroe'"
    valid = err.fix.removeprefix("valid: ").split(", ")
    assert {"laion_caption", "datacomp_caption", "caption_rules", "url_dedup", "download", "datacomp_image", "laion_image",
            "image_checks"} <= set(valid)
    assert valid == sorted(valid)


@pytest.mark.parametrize("entry", [
    {"stage": "laion_caption", "min_charz": 3},
    {"stage": "laion_caption", "params": {"min_charz": 3}},
])
def test_unknown_stage_param(entry) -> None:
    err = error_of(base(stages=[entry]))
    assert str(err) == "<dict>: stages[0].min_charz: unknown key (valid: min_chars)"


def test_unknown_param_lists_the_stage_params() -> None:
    err = error_of(base(stages=[{"stage": "url_dedup", "keep": "last"}]))
    assert str(err) == "<dict>: stages[0].keep: unknown key (valid: mode, false_positive_rate)"


@pytest.mark.parametrize(("spec", "key", "problem"), [
    (base(stages=[{"stage": "laion_caption", "min_chars": "many"}]), "stages[0].min_chars", "valid integer"),
    (base(stages=[{"stage": "download", "timeout": -1}]), "stages[0].timeout", "greater than 0"),
    ({"input": {"path": "x", "rows_per_unit": "lots"}}, "input.rows_per_unit", "valid integer"),
    ({"input": {"path": "x", "keep_columns": "license"}}, "input.keep_columns", "valid list"),
    (base(output={"resize_mode": "stretch"}), "output.resize_mode", "'border'"),
    (base(stages={"stage": "laion_caption"}), "stages", "valid list"),
])
def test_wrong_type(spec, key, problem) -> None:
    err = error_of(spec)
    assert err.key == key and problem in err.problem, str(err)


def test_missing_input(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nstages: []\n")
    assert str(error_of(path)) == f"{path}: input: required key is missing (add it)"
    assert str(error_of({"input": {"format": "csv"}})) == "<dict>: input.path: required key is missing (add it)"


def test_duplicate_stage_names() -> None:
    err = error_of(base(stages=[{"stage": "laion_caption"}, {"stage": "laion_caption"}]))
    assert err.key == "stages[1].name" and "duplicate stage name 'laion_caption'" in err.problem


def test_global_stage_after_download_starts_a_segment() -> None:
    from curate.engine.segments import split_stages

    _, stages = load_spec(base(stages=[{"stage": "laion_caption"}, {"stage": "download"}, {"stage": "url_dedup"},
                                       {"stage": "image_checks"}]))
    assert [[s.name for s in segment] for segment in split_stages(stages)] == [
        ["laion_caption", "download"], ["url_dedup", "image_checks"]]


def test_overrides_nested_and_list_index(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_YAML)
    spec, stages = load_spec(path, [
        "stages.1.min_words=5",             # inline parameter, by list index
        "stages.3.params.timeout=7.5",      # under params:
        "output.samples_per_shard=10",
        "input.keep_columns=[license, noise]",  # values are YAML
        "resources.cpus=2",                 # a section that was not in the file
        "name=renamed",
    ])
    assert stages[1].params.min_words == 5 and stages[3].params.timeout == 7.5
    assert spec.output.samples_per_shard == 10 and spec.input.keep_columns == ["license", "noise"]
    assert spec.resources.cpus == 2 and spec.name == "renamed"
    # overrides are validated like the file
    err = error_of(path, ["stages.0.min_chars=-3"])
    assert err.key == "stages[0].min_chars"


@pytest.mark.parametrize(("override", "key", "problem"), [
    ("output.samples_per_shard", "output.samples_per_shard", "override must look like key.path=value"),
    ("stages.9.min_chars=1", "stages.9.min_chars", "no list index '9'"),
    ("stages.first.min_chars=1", "stages.first.min_chars", "no list index 'first'"),
    ("name.inner=1", "name.inner", "cannot descend into a scalar"),
])
def test_bad_overrides(tmp_path: Path, override, key, problem) -> None:
    err = error_of(write(tmp_path, GOOD_YAML), [override])
    assert err.key == key and err.problem.startswith(problem)


def test_dict_and_yaml_are_equivalent(tmp_path: Path) -> None:
    import yaml

    from_file, _ = load_spec(write(tmp_path, GOOD_YAML))
    from_dict, _ = load_spec(yaml.safe_load(GOOD_YAML))
    assert from_file == from_dict and from_file.fingerprint() == from_dict.fingerprint()


def test_fingerprint() -> None:
    def fingerprint(overrides: list[str]) -> str:
        return load_spec(yaml_dict(), overrides)[0].fingerprint()

    def yaml_dict() -> dict:
        import yaml

        return yaml.safe_load(GOOD_YAML)

    reference = fingerprint([])
    assert len(reference) == 16 and reference == fingerprint([])
    # what decides the result changes it
    assert fingerprint(["stages.0.min_chars=6"]) != reference
    assert fingerprint(["stages.3.params.timeout=4"]) != reference
    assert fingerprint(["output.image_size=128"]) != reference
    assert fingerprint(["input.rows_per_unit=5"]) != reference
    # where the output goes and what runs it do not
    assert fingerprint(["output.path=/somewhere/else"]) == reference
    assert fingerprint(["resources.cpus=3"]) == reference
    # an explicit default equals the default
    assert fingerprint(["stages.0.min_chars=5"]) == reference


def test_stage_reading_a_column_nothing_writes() -> None:
    err = error_of(base(stages=[{"stage": "laion_caption"}, {"stage": "image_checks", "min_side": 10}]))
    assert err.key == "stages[1]"
    assert err.problem == "image_checks reads 'orig_width', which no earlier stage writes"
    assert err.fix == "add download before it"


def test_kept_source_columns_count_as_written() -> None:
    spec = base(stages=[{"stage": "image_checks"}])
    spec["input"]["keep_columns"] = ["orig_width", "orig_height", "orig_bytes"]
    _, stages = load_spec(spec)
    assert [s.kind for s in stages] == ["image_checks"]


# -- issue 5 §6: bounds, --set values, one line always -----------------------------------------


@pytest.mark.parametrize(("section", "key", "value", "problem"), [
    # before: each of these validated, then failed in a worker (OverflowError) or took it to 3 GB
    ("output", "samples_per_shard", 10**12, "less than or equal to 1000000"),
    ("output", "samples_per_shard", 1e12, "less than or equal to 1000000"),
    ("output", "image_size", 20000, "less than or equal to 4096"),
    ("input", "rows_per_unit", 10**10, "less than or equal to 1000000"),
    ("input", "max_member_bytes", 2**40, "less than or equal to 1000000000"),
    ("resources", "cpus", 10**6, "less than or equal to 1024"),
    ("resources", "object_store_memory_mb", 2**40, "less than or equal to 4194304"),
    ("output", "image_size", float("inf"), "Input should be a finite number"),
])
def test_upper_bounds(section, key, value, problem) -> None:
    spec = base()
    spec.setdefault(section, {})[key] = value
    err = error_of(spec)
    assert err.key == f"{section}.{key}" and problem in err.problem, str(err)


def test_yaml_infinity_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "input: {path: x}\noutput:\n  image_size: .inf\n")
    assert str(error_of(path)) == f"{path}: output.image_size: Input should be a finite number"


@pytest.mark.parametrize(("value", "problem"), [
    ("[unclosed", "invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("!!python/object:os.system ls", "invalid YAML: could not determine a constructor for the tag "
                                     "'tag:yaml.org,2002:python/object:os.system'"),
    ("{a: 1", "invalid YAML: expected ',' or '}', but got '<stream end>'"),
])
def test_set_with_a_bad_yaml_value_is_one_line(tmp_path: Path, value: str, problem: str) -> None:
    """Before: yaml's ParserError / ConstructorError traceback."""
    path = write(tmp_path, GOOD_YAML)
    err = error_of(path, [f"output.path={value}"])
    assert str(err) == f"{path}: --set output.path: {problem} (fix the syntax, or quote the value)"
    assert isinstance(err, UserError) and err.exit_code == 2


def test_python_tag_in_a_file_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object:os.system ls\ninput: {path: x}\n")
    err = str(error_of(path))
    assert err.startswith(f"{path}: line 1: invalid YAML: could not determine a constructor for the tag") and err.endswith(
        "(fix the syntax)")


def test_a_validator_message_is_one_line() -> None:
    err = error_of({"input": {"path": "x", "columns": ["caption", "url"]}})
    assert str(err) == "<dict>: input.columns: only for a headerless file: set input.header: false too"
    err = error_of({"input": {"path": "x", "header": False, "columns": ["url", "url"]}})
    assert str(err) == "<dict>: input.columns: names must be unique"


def test_headerless_input_settings() -> None:
    spec, _ = load_spec({"input": {"path": "x.tsv", "header": False, "url_column": 1, "caption_column": 0}})
    assert (spec.input.header, spec.input.columns, spec.input.url_column, spec.input.caption_column) == (False, None, "1", "0")
    spec, _ = load_spec({"input": {"path": "x.tsv", "header": False, "columns": ["caption", "url"]}})
    assert spec.input.columns == ["caption", "url"] and spec.input.max_member_bytes == 20_000_000


def test_read_is_a_reserved_stage_name() -> None:
    err = error_of(base(stages=[{"stage": "laion_caption", "name": "read"}]))
    assert str(err) == ("<dict>: stages[0].name: 'read' is the input reader's name in the ledger "
                        "(give the stage another `name:`)")



# --- per-stage resources (issue 6 §5): data, overridable in YAML, validated before Ray starts ---

def test_stage_resources_override_the_declared_defaults(tmp_path: Path) -> None:
    from curate.stages.base import Resources

    path = write(tmp_path, GOOD_YAML.replace(
        "    params: {timeout: 3, retries: 1}\n",
        "    params: {timeout: 3, retries: 1}\n"
        "    resources: {cpus: 2, gpus: 1, batch_size: 256, actors: [1, 8], memory_mb: 4000}\n"))
    spec, stages = load_spec(path)
    assert stages[3].resources == Resources(cpus=2.0, gpus=1.0, memory_mb=4000, batch_size=256, actors=(1, 8))
    assert stages[3].params.timeout == 3.0  # resources are not parameters
    assert stages[0].resources == type(stages[0]).default_resources  # untouched without resources:
    inline = load_spec(base(stages=[{"stage": "laion_caption", "min_chars": 3, "resources": {"batch_size": 10}}]))[1][0]
    assert (inline.params.min_chars, inline.resources.batch_size, inline.resources.cpus) == (3, 10, 1.0)


def test_stage_resources_from_the_command_line(tmp_path: Path) -> None:
    _, stages = load_spec(write(tmp_path, GOOD_YAML), ["stages.3.resources.actors=[2, 4]"])
    assert stages[3].resources.actors == (2, 4)


@pytest.mark.parametrize(("resources", "message"), [
    ({"cpu": 2}, "stages[0].resources.cpu: unknown key (valid: cpus, gpus, memory_mb, batch_size, actors)"),
    ({"gpus": -1}, "stages[0].resources.gpus: Input should be greater than or equal to 0"),
    ({"cpus": 0}, "stages[0].resources.cpus: Input should be greater than 0"),
    ({"batch_size": 0}, "stages[0].resources.batch_size: Input should be greater than 0"),
    ({"actors": [3, 1]}, "stages[0].resources.actors: must be [min, max], whole numbers with 1 <= min <= max, not [3, 1]"),
    ({"actors": [0, 2]}, "stages[0].resources.actors: must be [min, max], whole numbers with 1 <= min <= max, not [0, 2]"),
    ({"actors": [4]}, "stages[0].resources.actors: must be [min, max], whole numbers with 1 <= min <= max, not [4]"),
    ({"actors": [1.5, 2]}, "stages[0].resources.actors: must be [min, max], whole numbers with 1 <= min <= max, not [1.5, 2]"),
])
def test_bad_stage_resources_are_one_line(resources, message) -> None:
    assert str(error_of(base(stages=[{"stage": "laion_caption", "resources": resources}]))) == f"<dict>: {message}"


def test_stage_resources_are_not_in_the_fingerprint() -> None:
    reference = load_spec(base(stages=[{"stage": "laion_caption"}]))[0].fingerprint()
    tuned = load_spec(base(stages=[{"stage": "laion_caption", "resources": {"cpus": 2, "batch_size": 64}}]))[0]
    assert tuned.fingerprint() == reference


def test_resources_ray_would_refuse_or_ignore_are_config_errors() -> None:
    err = error_of(base(stages=[{"stage": "laion_caption", "resources": {"actors": [1, 2]}}]))
    assert str(err) == ("<dict>: stages[0].resources.actors: laion_caption loads nothing, so it runs as tasks, not actors "
                        "(remove actors; cpus sets what each task takes)")
    err = error_of(base(stages=[{"stage": "laion_caption", "resources": {"gpus": 1}}]))
    assert str(err) == "<dict>: stages[0].resources: laion_caption on GPUs needs a batch_size (add batch_size, e.g. 256)"
