"""Launching curate on a cluster: Ray Jobs (``curate submit``); KubeRay and SLURM templates live in ``jobs/``."""
