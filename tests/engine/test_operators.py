"""How stages become Ray Data operators (issue 6 §5): a stage that loads something runs in an
actor pool sized by its resources, a stateless one as tasks; setup_on_node runs once per node,
teardown when an actor is released or a worker moves to another run; operators carry their
stage's name; a stage's sub-stages are operators of their own whose drops the ledger gives to
the stage."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.engine import node_setup
from curate.engine.operators import add_stage, operators_of, ready
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE
from curate.stages.base import Decision, Filter, Resources, Stage, StageParams, append_columns


def record(folder: Path, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{what}-{os.getpid()}-{time.monotonic_ns()}").touch()


def recorded(folder: Path, what: str) -> int:
    return len(list(folder.glob(f"{what}-*"))) if folder.exists() else 0


def where_am_i() -> tuple[str | None, int]:
    import ray

    return ray.get_runtime_context().get_actor_id(), os.getpid()


class Tagged(Stage):
    """Adds where each row was processed; ``log`` (a folder) records every hook call."""

    kind = "tagged"

    def __init__(self, log: Path, name: str | None = None, resources: dict | None = None):
        super().__init__(StageParams(), name)
        self.log = log
        self.resource_overrides = resources or {}

    def process(self, batch: pa.Table) -> pa.Table:
        actor, pid = where_am_i()
        return append_columns(batch, {f"{self.name}_actor": pa.array([actor] * batch.num_rows, pa.string()),
                                      f"{self.name}_pid": pa.array([pid] * batch.num_rows, pa.int64())})


class Loading(Tagged):
    """A stage that loads something: setup and the other hooks are overridden."""

    kind = "loading"

    def setup_on_node(self) -> None:
        record(self.log, "node")

    def setup(self) -> None:
        record(self.log, "setup")

    def teardown(self) -> None:
        record(self.log, "teardown")


# -- a stage that expands, as a CLIP stage would: CPU prep tasks -> "inference" actors -> CPU scoring


class Prep(Stage):
    kind = "prep"

    def process(self, batch: pa.Table) -> pa.Table:
        actor, _ = where_am_i()
        return append_columns(batch, {"chars": pc.utf8_length(batch.column("caption")),
                                      "prep_actor": pa.array([actor] * batch.num_rows, pa.string())})


class Infer(Stage):
    kind = "infer"
    default_resources = Resources(cpus=0.5, actors=(1, 1))

    def setup(self) -> None:
        self.weight = 10  # the "model"

    def process(self, batch: pa.Table) -> pa.Table:
        actor, _ = where_am_i()
        return append_columns(batch, {"score": pc.multiply(batch.column("chars"), self.weight),
                                      "infer_actor": pa.array([actor] * batch.num_rows, pa.string())})


class Score(Filter):
    kind = "score"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, scored: pa.Table) -> Decision:
        low = pc.less(scored.column("score"), 100)
        return Decision(keep=pc.invert(low), reason=pc.if_else(low, "score_too_low", None),
                        detail=pc.cast(scored.column("score"), pa.string()))


class Scorer(Filter):
    """The stage the user writes in YAML; the engine runs its three parts."""

    kind = "scorer"
    column_roles: ClassVar[dict] = {}

    def expand(self) -> list[Stage]:
        return [Prep(StageParams()), Infer(StageParams()), Score(StageParams())]

    def process(self, batch: pa.Table) -> pa.Table:
        raise AssertionError("an expanded stage runs as its parts")

    def decide(self, scored: pa.Table) -> Decision:
        raise AssertionError("an expanded stage runs as its parts")


@pytest.fixture(scope="module", autouse=True)
def _ship_this_module_by_value():
    """Ray workers cannot import this test module: send its classes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def rows(n: int) -> pa.Table:
    return pa.table({"caption": [f"caption {'x' * i}" for i in range(n)], DROP_STAGE: pa.nulls(n, pa.string()),
                     DROP_REASON: pa.nulls(n, pa.string()), DROP_DETAIL: pa.nulls(n, pa.string())})


def run(stages: list[Stage], n: int = 16, blocks: int = 8):
    import ray

    ds = ray.data.from_arrow(rows(n)).repartition(blocks)
    token = uuid.uuid4().hex
    for index, stage in enumerate(stages):
        ds = add_stage(ds, stage, f"{token}:{index}")
    done = ds.materialize()
    return pa.concat_tables(ray.get(list(done.to_arrow_refs()))), done.stats()


def wait_for(condition, seconds: float = 60) -> bool:
    """Ray releases actors after the dataset is done, asynchronously: wait for it to happen."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_loading_stage_runs_in_an_actor_pool_and_a_stateless_one_as_tasks(tmp_path, ray_session) -> None:
    log = tmp_path / "log"
    loading = Loading(log, name="embed", resources={"cpus": 0.5, "actors": [2, 2]})
    stateless = Tagged(log, name="rules")  # other resources than the pool: Ray Data does not fuse it into the actors
    out, stats = run([stateless, loading])
    assert out.num_rows == 16
    assert set(out.column("rules_actor").to_pylist()) == {None}  # tasks
    actors = set(out.column("embed_actor").to_pylist())
    assert None not in actors and 1 <= len(actors) <= 2
    assert recorded(log, "setup") == 2  # the pool of [2, 2]: two actors, each set up once
    assert recorded(log, "node") == 1  # one node: setup_on_node ran once before them
    assert wait_for(lambda: recorded(log, "teardown") == 2), f"{recorded(log, 'teardown')} of 2 actors torn down"
    assert "MapBatches(rules)" in stats and "MapBatches(embed)" in stats and "MapBatches(rules)->" not in stats


def test_the_download_operator_is_named_download(tmp_path, ray_session, http_server) -> None:
    import ray

    from curate.stages.download import DownloadParams, DownloadStage

    stage = DownloadStage(DownloadParams(allow_private=["127.0.0.0/8"], threads=4))
    table = rows(4).append_column("url", pa.array([http_server.url(f"/good/op{i}.jpg") for i in range(4)]))
    ds = add_stage(ray.data.from_arrow(table), stage, "run-download:0").materialize()
    out = pa.concat_tables(ray.get(list(ds.to_arrow_refs())))
    assert out.column("download_status").to_pylist() == [None] * 4
    assert "MapBatches(download)" in ds.stats() and "_stage_block" not in ds.stats()


def test_sub_stages_are_operators_of_their_own_and_the_ledger_names_the_stage(ray_session) -> None:
    scorer = Scorer(StageParams(), name="clip")
    assert [(label, part.name, part_token) for label, part, part_token in operators_of(scorer, "r:3")] == [
        ("clip.prep", "clip", "r:3.0"), ("clip.infer", "clip", "r:3.1"), ("clip.score", "clip", "r:3.2")]
    out, stats = run([Scorer(StageParams(), name="clip")], n=16)
    for label in ("MapBatches(clip.prep)", "MapBatches(clip.infer)", "MapBatches(clip.score)"):
        assert label in stats
    assert set(out.column("prep_actor").to_pylist()) == {None}  # CPU prep: tasks
    assert None not in set(out.column("infer_actor").to_pylist())  # inference: actors
    by_caption = {r["caption"]: r for r in out.to_pylist()}
    for caption, row in by_caption.items():
        low = len(caption) * 10 < 100
        assert (row[DROP_STAGE], row[DROP_REASON]) == (("clip", "score_too_low") if low else (None, None))
        assert row[DROP_DETAIL] == (str(len(caption) * 10) if low else None)


def test_a_task_worker_tears_down_the_stages_of_an_earlier_run(tmp_path) -> None:
    first, second = Loading(tmp_path / "a"), Loading(tmp_path / "b")
    assert ready(first, "run1:0") is first and ready(first, "run1:0") is first
    assert recorded(tmp_path / "a", "setup") == 1 and recorded(tmp_path / "a", "teardown") == 0
    ready(second, "run2:0")
    assert recorded(tmp_path / "a", "teardown") == 1 and recorded(tmp_path / "b", "setup") == 1
    ready(second, "run2:0")
    assert recorded(tmp_path / "b", "setup") == 1


class SlowNodeSetup(Stage):
    """setup_on_node takes a while and fails once when told to."""

    kind = "slow_node_setup"

    def __init__(self, log: Path, fail: bool = False):
        super().__init__(StageParams())
        self.log, self.fail = log, fail

    def setup_on_node(self) -> None:
        record(self.log, "node")
        time.sleep(0.3)  # long enough for the other process to arrive while this one holds the lock
        if self.fail:
            raise RuntimeError("weights server unreachable")

    def process(self, batch: pa.Table) -> pa.Table:
        return batch


def _node_setup_in_child(log: str, token: str, barrier, fail: bool) -> None:
    barrier.wait()
    try:
        node_setup.setup_on_node_once(SlowNodeSetup(Path(log), fail), token)
    except RuntimeError:
        record(Path(log), "failed")


def _two_processes(log: Path, token: str, fail: tuple[bool, bool]) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    children = [context.Process(target=_node_setup_in_child, args=(str(log), token, barrier, f)) for f in fail]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0


def test_setup_on_node_runs_once_across_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "node-tmp"))  # the children's node temp dir
    (tmp_path / "node-tmp").mkdir()
    _two_processes(tmp_path / "log", "run-a:0", (False, False))
    assert recorded(tmp_path / "log", "node") == 1
    _two_processes(tmp_path / "log", "run-b:0", (False, False))  # a new run checks again, once
    assert recorded(tmp_path / "log", "node") == 2


def test_a_failed_setup_on_node_is_tried_again_by_the_next_worker(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "node-tmp"))
    (tmp_path / "node-tmp").mkdir()
    _two_processes(tmp_path / "log", "run-c:0", (True, True))
    assert recorded(tmp_path / "log", "node") == 2 and recorded(tmp_path / "log", "failed") == 2
    _two_processes(tmp_path / "log", "run-c:0", (False, False))
    assert recorded(tmp_path / "log", "node") == 3


def test_yaml_actors_are_valid_for_a_stage_whose_parts_load_something() -> None:
    from curate.config import load_spec
    from curate.stages.registry import register

    register(Scorer)
    _, (stage,) = load_spec({"input": {"path": "in.parquet"}, "stages": [{"stage": "scorer", "resources": {"actors": [1, 3]}}]})
    assert stage.resources.actors == (1, 3)


class CheapSetupIO(Loading):
    """An I/O stage whose setup is cheap (a client): tasks unless asked for a pool."""

    kind = "cheap_setup_io"
    runs_as_tasks = True


def test_which_stages_run_in_actors(tmp_path) -> None:
    from curate.engine.operators import runs_in_actors

    assert runs_in_actors(Loading(tmp_path)) and not runs_in_actors(Tagged(tmp_path))
    assert not runs_in_actors(CheapSetupIO(tmp_path))
    assert runs_in_actors(CheapSetupIO(tmp_path, resources={"actors": [1, 2]}))  # the YAML asked for a pool
    assert not runs_in_actors(Tagged(tmp_path, resources={"actors": [1, 2]}))  # config refuses this one
