"""A two-node Ray cluster on 127.0.0.1 for tests, run as its own process:
``python ray_cluster.py PORT TEMP_DIR``.

Two raylets, one CPU each, started with ``ray.cluster_utils.Cluster`` under the same patches
as curate's embedded Ray (no API server, no autoscaler monitor, loopback node IP): ``ray start``
would start Ray's API server, whose usage-stats module probes cloud-metadata addresses. It prints
one JSON line ``{"address": ..., "nodes": [head id, second id]}``, then answers each line read on
stdin with one JSON line ``{"<job id>": {"<node id>": tasks of the job run there}}``, from the
task events in the GCS (where Ray's own state API learns where a task ran). It stops when stdin
closes.
"""

from __future__ import annotations

import collections
import json
import sys
import time

import ray
from ray.cluster_utils import Cluster

from curate.engine.ray_runtime import _embedded_patches

# How long task events may take to reach the GCS: workers report them every second.
EVENTS_SETTLE_S = 3.0


def _tasks_per_node(cluster: Cluster) -> dict[str, dict[str, int]]:
    tasks: dict[str, dict[str, set]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for event in cluster.global_state._get_all_task_events():
        if event.state_updates.node_id:
            tasks[event.job_id.hex()][event.state_updates.node_id.hex()].add(event.task_id.hex())
    return {job: {node: len(ids) for node, ids in nodes.items()} for job, nodes in tasks.items()}


def main() -> None:
    port, temp_dir = int(sys.argv[1]), sys.argv[2]
    common = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 200 * 1024 * 1024}
    with _embedded_patches(metrics=False):
        cluster = Cluster(initialize_head=True, head_node_args={
            **common, "gcs_server_port": port, "include_dashboard": False, "temp_dir": temp_dir})
        second = cluster.add_node(**common)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "nodes": [cluster.head_node.node_id, second.node_id]}), flush=True)
    for _ in sys.stdin:
        time.sleep(EVENTS_SETTLE_S)
        print(json.dumps(_tasks_per_node(cluster)), flush=True)
    cluster.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
