"""An actor pool that cannot fuse with the tasks feeding it must leave them a CPU: the plan that
hung (clip_score with resources.cpus 2 on a 2-CPU Ray read nothing for 3 minutes) is refused."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.engine.operators import check_room_for_tasks
from curate.errors import UserError
from curate.pipeline import run_pipeline
from curate.stages.clip import ClipScoreFilter, ClipScoreParams


def _parts(**resources) -> list:
    stage = ClipScoreFilter(ClipScoreParams(model="curate-micro-clip", pretrained="random"))
    stage.resource_overrides = resources
    return stage.expand()


def test_a_pool_holding_every_cpu_is_refused() -> None:
    with pytest.raises(UserError, match=r"^clip_score: its actors take 2 of the cluster's 2 CPUs, leaving none for the "
                                        r"tasks that feed them"):
        check_room_for_tasks(_parts(cpus=2), 2)
    with pytest.raises(UserError, match="its actors take 3 of the cluster's 3.5 CPUs"):  # 2 actors at least
        check_room_for_tasks(_parts(cpus=1.5, actors=[2, 4]), 3.5)
    check_room_for_tasks(_parts(cpus=1.5, actors=[2, 4]), 4)


def test_pools_that_fuse_with_tasks_or_leave_room_pass() -> None:
    check_room_for_tasks(_parts(cpus=1), 1)  # 1 CPU like a task: Ray Data fuses the tasks into the actor
    check_room_for_tasks(_parts(cpus=2), 3)
    check_room_for_tasks(_parts(cpus=1, gpus=1), 2)  # a GPU actor and one CPU for its feeders


def test_the_hanging_plan_stops_with_the_error(ray_session, tmp_path) -> None:
    pq.write_table(pa.table({"url": ["a", "b"], "caption": ["x", "y"], "image": pa.array([b"1", b"2"])}),
                   tmp_path / "in.parquet")
    spec = {"name": "hang", "input": {"path": str(tmp_path / "in.parquet"), "keep_columns": ["image"]},
            "stages": [{"stage": "clip_score", "model": "curate-micro-clip", "pretrained": "random",
                        "resources": {"cpus": 2}}]}
    with pytest.raises(UserError, match="clip_score: its actors take 2 of the cluster's 2 CPUs"):
        run_pipeline(spec, output=str(tmp_path / "run"))
