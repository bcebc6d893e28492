"""A recipe as a Ray Job: package it with the project, submit it to a cluster's job server, stream its logs.

The job runs ``python -m curate.cli run RECIPE --output RUN_DIR`` on the cluster's head node, in a
copy of the working directory (Ray's ``working_dir``: uploaded minus what ``.gitignore`` and
``.rayignore`` name), so the recipe and every relative path it names resolve there as they do here.
The ``curate`` package itself travels as a ``py_modules`` entry: the cluster needs curate's
dependencies (the curate image, or ``pip install curate``), not this checkout's code.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from curate import storage
from curate.config import parse_spec
from curate.errors import UserError
from curate.io.http_server import check_serve_reachable

CURATE_PACKAGE = Path(__file__).resolve().parents[1]
#: Never worth uploading: Ray caps a package at 512 MiB (its gRPC message size), which a checkout's git history alone can pass.
ALWAYS_EXCLUDED = [".git", "__pycache__"]
NO_AGENT = "No available agent to submit job"
NO_AGENT_RETRY_S = 60
NO_AGENT_RETRY_EVERY_S = 2


@dataclass
class Submission:
    job_id: str
    status: str  # Ray's final JobStatus: SUCCEEDED, FAILED or STOPPED
    message: str = ""

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "SUCCEEDED" else 1


def job_request(pipeline: str, address: str, working_dir: str | None, output: str | None, overrides: list[str]) -> dict:
    """The ``submit_job`` arguments for a recipe: checked here first, so a user mistake costs no upload."""
    root = Path(working_dir or ".").resolve()
    if not root.is_dir():
        raise UserError(f"--working-dir {working_dir}: not a directory")
    recipe = Path(pipeline).resolve()
    if not recipe.is_file():
        raise UserError(f"{pipeline}: no such pipeline file")
    if not recipe.is_relative_to(root):
        raise UserError(f"{pipeline}: not inside the working directory {root}, which is what the job receives "
                        "(pass --working-dir a directory that holds it)")
    # The spec only: building the stages would also look for model weights in this machine's cache,
    # and a cluster has its own (the curate image's CURATE_CACHE volume, jobs/kuberay).
    spec = parse_spec(recipe, overrides)
    check_serve_reachable(spec.input.serve, address, str(pipeline))
    run_dir = output or spec.output.path
    if run_dir is None or (storage.is_local(run_dir) and not Path(run_dir.removeprefix("file://")).is_absolute()):
        raise UserError(f"{pipeline}: the run directory {run_dir or f'runs/{spec.name}'} would be relative to the "
                        "job's copy of the working directory, which Ray deletes; pass --output s3://... (or an "
                        "absolute path on a filesystem the cluster shares)")
    command = ["python", "-m", "curate.cli", "run", recipe.relative_to(root).as_posix(), "--output", run_dir]
    for override in overrides:
        command += ["--set", override]
    return {
        "entrypoint": shlex.join(command),
        "runtime_env": {"working_dir": str(root), "py_modules": [str(CURATE_PACKAGE)], "excludes": ALWAYS_EXCLUDED,
                        # curate run joins the cluster shipping curate as py_modules itself; Ray refuses a
                        # driver's runtime_env that repeats a job's key unless told to combine them.
                        "env_vars": {"RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}},
        "metadata": {"curate_pipeline": spec.name, "curate_output": run_dir},
    }


def connect(address: str):
    """A client of the job server at ``address``; an unreachable or wrong one is a one-line error.

    Only http(s) addresses: Ray's client takes anything else for a GCS address and dials it as a
    driver would, turning a loopback one into the machine's external address (seen: 45 s of
    retries against 192.0.2.2 for ``127.0.0.1:1``)."""
    from ray.job_submission import JobSubmissionClient

    # Ray's SDK logs each package upload and the log stream's end at INFO on the terminal (its modules
    # set their own loggers to INFO); curate's terminal has curate's lines and the job's.
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: not a job server address (http://HEAD:8265, the head's dashboard port)")
    try:
        return JobSubmissionClient(address)
    except ConnectionError:
        raise UserError(f"--address {address}: no Ray job server answers there") from None
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"--address {address}: {str(err).strip().splitlines()[0]}") from None


def start(client, request: dict, address: str) -> str:
    """Submit the job; its id. A head that has just started can answer before its node's agent has
    registered with the job server, which then refuses the job with "No available agent" (seen 10 s
    after the job API answered, on 2 cores at load 30): that is retried for a minute."""
    deadline = time.monotonic() + NO_AGENT_RETRY_S
    while True:
        try:
            return client.submit_job(**request)
        except RuntimeError as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if NO_AGENT not in message or time.monotonic() > deadline:
                raise UserError(f"--address {address}: the job server refused the job: {message}") from None
        time.sleep(NO_AGENT_RETRY_EVERY_S)


def follow(client, job_id: str, out=None) -> Submission:
    """Stream the job's logs to ``out`` until it ends; its final status."""
    from ray.job_submission import JobStatus

    asyncio.run(_stream_logs(client, job_id, out or sys.stdout))
    info = client.get_job_info(job_id)
    while not JobStatus(info.status).is_terminal():  # the log stream can close a moment before the status is final
        time.sleep(0.5)
        info = client.get_job_info(job_id)
    return Submission(job_id, str(info.status.value), (info.message or "").strip())


async def _stream_logs(client, job_id: str, out) -> None:
    async for lines in client.tail_job_logs(job_id):
        out.write(lines)
        out.flush()
