"""``curate submit``: a recipe as a Ray Job on a running cluster (Ray Job Submission SDK)."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_parsers(commands) -> None:
    submit = commands.add_parser("submit", help="run a pipeline as a Ray Job on a cluster (streams its logs)")
    submit.add_argument("pipeline", help="pipeline YAML")
    submit.add_argument("--address", required=True, help="the cluster's job server, e.g. http://HEAD:8265")


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    if args.command != "submit":
        return None
    raise NotImplementedError("curate submit: being built (issue 9 §4)")
