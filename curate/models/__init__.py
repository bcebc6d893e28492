"""The one place that knows how to load model weights (DESIGN.md, Models): bundled offline
files from installed packages, or a local path; a missing file is a one-line error that says
how to fix it. One module per model family (``fasttext_lid``: fastText language ID)."""
