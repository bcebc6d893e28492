"""``curate submit``: a recipe as a Ray Job on a running cluster (Ray Job Submission SDK)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def add_parsers(commands) -> None:
    submit = commands.add_parser("submit", help="run a pipeline as a Ray Job on a cluster (streams its logs)")
    submit.add_argument("pipeline", help="pipeline YAML (inside the working directory)")
    submit.add_argument("--address", required=True, help="the cluster's job server, e.g. http://HEAD:8265")
    submit.add_argument("--working-dir", help="directory the job runs in, uploaded with it (default: the current "
                                              "one; .gitignore and .rayignore entries stay behind)")
    submit.add_argument("--output", "-o", help="run directory as the cluster sees it, e.g. s3://bucket/runs/x "
                                               "(default: output.path; must not be relative)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec value (repeatable), as for curate run")
    submit.add_argument("--no-wait", action="store_true", help="return once the job is submitted")


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    """The job id goes to stdout first (scripts read it), then the job's logs; the status line to stderr."""
    if args.command != "submit":
        return None
    from curate.jobs.submit import connect, follow, job_request, start

    request = job_request(args.pipeline, args.address, args.working_dir, args.output, args.overrides)
    client = connect(args.address)
    job_id = start(client, request, args.address)
    print(job_id, flush=True)
    if args.no_wait:
        return 0
    try:
        result = follow(client, job_id, out=sys.stdout)
    except KeyboardInterrupt:
        console.print(f"curate: stopped following job {job_id}; it keeps running (`ray job stop {job_id}` stops it)")
        return 130
    if result.exit_code:
        detail = f": {result.message.splitlines()[-1]}" if result.message else ""
        print(f"curate: error: job {job_id} {result.status}{detail}", file=sys.stderr)
    else:
        console.print(f"job {job_id}: {result.status}")
    return result.exit_code
