"""Images read from WebDataset tar inputs go through the download stage's image path (issue 5 §4).

A tar member is as untrusted as a downloaded body: it is decoded within the same decoded-bytes
budget, oriented, resized and re-encoded to the run's ``output`` settings by
:class:`curate.imaging.ImageTransformer`, so shards from a tar input hold the same kind of
images as shards from URLs, and ``image_checks`` can follow a tar input. A member that is not a
usable image is a ledger row of the ``read`` stage with the imaging reason (``not_an_image``,
``truncated_image``, ``undecodable``, ``decompression_bomb``); a sample without an image member
passes unchanged. The reader has already refused members over ``input.max_member_bytes``
(``too_large``) without reading them.

Reads ``image``. Writes ``image``, ``width``, ``height``, ``orig_width``, ``orig_height``,
``orig_bytes`` (as ``download`` does) and ``image_status``/``image_error`` (null, or the reason
and its detail).
"""

from __future__ import annotations

import pyarrow as pa

from curate.imaging import DEFAULT_MAX_DECODED_BYTES, ImageTransformer, use_one_core
from curate.io.read_common import READ_STAGE
from curate.schema import IMAGE, IMAGE_COLUMN_TYPES
from curate.stages.base import Decision, Filter, ImageOutput, RunContext, StageParams, append_columns, status_decision

_COLUMN_TYPES = {
    **IMAGE_COLUMN_TYPES,
    "image_status": pa.string(),
    "image_error": pa.string(),
}


class TarImageCheck(Filter):
    """Decode, check and re-encode every image of a tar input; its drops count under ``read``."""

    kind = "tar_images"
    reads = (IMAGE,)
    runs_as_tasks = True  # decoding only: nothing worth an actor
    writes = tuple(_COLUMN_TYPES)

    def __init__(self):
        super().__init__(StageParams(), name=READ_STAGE)
        self.image_output = ImageOutput()
        self._transform: ImageTransformer | None = None

    def bind(self, context: RunContext) -> None:
        self.image_output = context.image_output

    def setup(self) -> None:
        use_one_core()
        self._transform = ImageTransformer(self.image_output, max_decoded_bytes=DEFAULT_MAX_DECODED_BYTES)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_transform": None}

    def process(self, batch: pa.Table) -> pa.Table:
        bodies = batch.column(IMAGE).to_pylist()
        cols: dict[str, list] = {name: [None] * len(bodies) for name in self.writes}
        for index, body in enumerate(bodies):
            if body is not None:
                result = self._transform(body)
                cols["image_status"][index], cols["image_error"][index] = result.reason, result.error
                result.fill(cols, index, body)
        return append_columns(batch, {name: pa.array(values, _COLUMN_TYPES[name]) for name, values in cols.items()})

    def decide(self, scored: pa.Table) -> Decision:
        return status_decision(scored, "image_status", "image_error")
