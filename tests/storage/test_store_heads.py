"""The heads' weights on the object store (a cluster's shared copy): checked on the driver at spec
time, recorded with their hash, loaded on a worker through its node-local copy."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from curate import storage
from curate.stages.aesthetic import AestheticFilter, AestheticParams
from curate.stages.safety import ClipNsfwFilter, ClipNsfwParams


def test_head_weights_on_the_store(bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "node-cache"))
    npz = tmp_path / "head.npz"
    np.savez(npz, mean=np.zeros(2, np.float32), variance=np.ones(2, np.float32), W0=np.array([[1.0], [0]], np.float32),
             b0=np.zeros(1, np.float32), cat_cols=np.zeros(0, np.int64))
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[2.0, 3.0]]))
        linear.bias.fill_(1.0)
    pth = tmp_path / "linear.pth"
    torch.save(linear.state_dict(), pth)
    rows = pa.table({"clip_image_embedding": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))})

    for local, stage_of, column, expected in (
            (npz, lambda uri: ClipNsfwFilter(ClipNsfwParams(weights=uri)), "punsafe", [1 / (1 + np.exp(-1.0)), 0.5]),
            (pth, lambda uri: AestheticFilter(AestheticParams(head="v1", weights=uri)), "aesthetic", [3.0, 4.0])):
        uri = f"{bucket}/heads/{local.name}"
        storage.write_bytes(uri, local.read_bytes())
        stage = stage_of(uri)
        record = stage.content_record()
        assert (record["ref"], record["sha256"], record["bytes"]) == (uri, hashlib.sha256(local.read_bytes()).hexdigest(),
                                                                      local.stat().st_size)
        stage.setup()  # a worker: loads its node's copy, checked against the recorded hash
        assert (tmp_path / "node-cache" / "store" / record["sha256"][:32] / local.name).read_bytes() == local.read_bytes()
        scores = stage.process(rows).column(column).to_pylist()
        assert scores == [np.float32(e) for e in expected]
