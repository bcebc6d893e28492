"""Execution on Ray Data: stage application, the run directory, commit and resume."""
