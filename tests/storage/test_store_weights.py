"""Model weights on the object store (a cluster's shared copy): resolved and hashed on the
driver, copied once per node into its cache, refused when the object changed under the run."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from curate import storage
from curate.errors import UserError
from curate.models import open_clip_models
from curate.models.weights import materialize


def test_weights_on_the_store_load_through_a_node_local_copy(bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "node-cache"))
    torch.manual_seed(5)
    model, _, _ = open_clip_models.load(open_clip_models.resolve("curate-micro-clip", "random"))
    local = tmp_path / "micro.safetensors"
    save_file(model.state_dict(), str(local))
    uri = f"{bucket}/models/micro.safetensors"
    storage.write_bytes(uri, local.read_bytes())

    ref = open_clip_models.resolve("curate-micro-clip", uri)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    assert (ref.weights, ref.record["sha256"], ref.record["bytes"]) == (uri, digest, local.stat().st_size)
    loaded, _, _ = open_clip_models.load(ref)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
    copy = materialize(uri, digest)
    assert copy == tmp_path / "node-cache" / "store" / digest[:32] / "micro.safetensors"
    assert copy.read_bytes() == local.read_bytes() and materialize(uri, digest) == copy

    storage.write_bytes(uri, b"other weights")
    copy.unlink()
    with pytest.raises(UserError, match=f"its sha256 is now {hashlib.sha256(b'other weights').hexdigest()[:16]}, not "
                                        f"the {digest[:16]} this run recorded"):
        materialize(uri, digest)
    with pytest.raises(UserError, match=r"models/none\.pt does not exist"):
        open_clip_models.resolve("curate-micro-clip", f"{bucket}/models/none.pt")
