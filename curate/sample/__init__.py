"""Synthetic sample corpora with known ground truth."""
