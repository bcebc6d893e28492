"""``Stage.setup_on_node`` once per node and run, whichever worker of the stage starts first.

Workers of one stage start concurrently in separate processes (actors of a pool, task workers),
so the first one to arrive runs the hook under an exclusive ``flock`` in the node's temp dir
while the others wait on the lock, then find the done-marker and skip it. A hook that raises
leaves no marker: the next worker tries again. Markers are keyed by the run token (a fresh one
per ``curate run``) and the Ray node id, so a rerun checks its node cache again, and two Ray
nodes sharing one machine each run the hook once.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from pathlib import Path

from curate.stages.base import Stage

_DONE_HERE: set[str] = set()  # (token) already set up by this process: skip the file system


def node_setup_dir() -> Path:
    """Where the locks and markers live: the node's temp dir (``TMPDIR`` decides)."""
    return Path(tempfile.gettempdir()) / "curate-node-setup"


def setup_on_node_once(stage: Stage, token: str) -> None:
    """Run ``stage.setup_on_node()`` unless a worker on this node already did for ``token``."""
    if type(stage).setup_on_node is Stage.setup_on_node or token in _DONE_HERE:
        return
    root = node_setup_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(token.encode()).hexdigest()[:24]
    done = root / f"{key}-{_node_id()}.done"
    with open(root / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            stage.setup_on_node()
            done.touch()
    _DONE_HERE.add(token)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
