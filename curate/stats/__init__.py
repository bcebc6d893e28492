"""Counters, the per-stage funnel and its rendering."""
