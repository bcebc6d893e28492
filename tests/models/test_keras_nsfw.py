"""LAION's CLIP NSFW detector as released (autokeras SavedModel zips) read without TensorFlow
(curate.models.keras_nsfw): both released files give exactly the arrays of the documented
``.npz`` (converted with TensorFlow, ../shared/models/laion-clip-nsfw), so a user can point
``clip_nsfw`` at LAION's URL; a zip of something else is a one-line error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from curate.errors import UserError
from curate.models.keras_nsfw import read_release
from curate.models.laion_heads import ClipNsfwHead

HEADS = SHARED / "models" / "laion-clip-nsfw"
RELEASES = [("clip_autokeras_nsfw_b32.zip", "clip_nsfw_vit_b_32.npz", 512),
            ("clip_autokeras_binary_nsfw.zip", "clip_nsfw_vit_l_14.npz", 768)]


@pytest.mark.shared_data
@pytest.mark.parametrize(("release", "converted", "dim"), RELEASES)
def test_released_zip_reads_as_the_npz(release: str, converted: str, dim: int) -> None:
    if not HEADS.is_dir():
        pytest.skip(f"needs {HEADS} (LAION's released heads; see ../shared/models/README.md)")
    arrays = read_release(HEADS / release)
    expected = dict(np.load(HEADS / converted))
    assert sorted(arrays) == sorted(expected)
    for name, values in expected.items():
        assert arrays[name].dtype.kind == values.dtype.kind and np.array_equal(arrays[name], values), name
    rows = np.load(HEADS / f"violence_detection_vit_{'b_32' if dim == 512 else 'l_14'}.npy").astype(np.float32)
    from_zip = ClipNsfwHead(HEADS / release)
    assert from_zip.dim == dim and from_zip(rows).tolist() == ClipNsfwHead(HEADS / converted)(rows).tolist()


def test_other_zips_are_one_line_errors(tmp_path: Path) -> None:
    other = tmp_path / "model.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("model/saved_model.pb", b"")
    with pytest.raises(UserError) as err:
        ClipNsfwHead(other)
    assert str(err.value) == (f"{other}: not a LAION CLIP NSFW head (the released autokeras .zip, or the .npz layout of "
                              "the docs: mean, variance, W0, b0 ..., cat_cols): no variables.index in the zip (a Keras "
                              "SavedModel of LAION's CLIP NSFW detector)")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not a zip")
    with pytest.raises(UserError, match=r"broken\.zip: not a LAION CLIP NSFW head .*: File is not a zip file$"):
        ClipNsfwHead(broken)
