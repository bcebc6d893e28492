"""Bundled trainers: CLIP through open_clip's own trainer (``curate train clip``), zero-shot
evaluation (``curate eval clip``) and filtering networks trained on trusted data (Fang et al.
2023, "Data Filtering Networks") that score a pool in place of pretrained weights."""
