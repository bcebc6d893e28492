"""curate: distributed data curation for web-scale image-text corpora, on Ray.

Python API (equivalent to the YAML and the CLI)::

    from curate import run_pipeline
    result = run_pipeline("pipelines/quickstart.yaml", output="runs/qs", overrides=["output.samples_per_shard=500"])
    print(result.funnel.to_json())
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def run_pipeline(*args, **kwargs):
    """See :func:`curate.pipeline.run_pipeline`."""
    from curate.pipeline import run_pipeline as _run

    return _run(*args, **kwargs)


def load_spec(*args, **kwargs):
    """See :func:`curate.config.load_spec`."""
    from curate.config import load_spec as _load

    return _load(*args, **kwargs)
