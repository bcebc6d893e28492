"""Stages, one module per family; :mod:`curate.stages.registry` finds a stage by its YAML name
and imports only the families a spec uses (so this package imports none of them)."""
