"""`curate eval clip` equals a direct open_clip computation: retrieval R@1/R@5 both ways and
zero-shot accuracy on labelled shards, from --model/--pretrained or a --filter-net directory."""

from __future__ import annotations

import io
import json

import pytest

from curate.errors import UserError
from curate.train.eval import EvalClipArgs, evaluate_clip
from curate.train.shards import Pair, write_pair_shards


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import open_clip
    import torch
    from safetensors.torch import save_file

    from curate.models.clip_configs import register

    register()
    torch.manual_seed(0)
    model = open_clip.create_model("curate-tiny-clip")
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def direct(weights, pairs, classes, template):
    """Embeddings and metrics by hand, with open_clip alone."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms("curate-tiny-clip", pretrained=str(weights))
    model.eval()
    tokenizer = open_clip.get_tokenizer("curate-tiny-clip")
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(io.BytesIO(p.image)).convert("RGB")) for p in pairs])
        img = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer([p.caption for p in pairs])), dim=-1)
        cls = torch.nn.functional.normalize(model.encode_text(tokenizer([template.format(c) for c in classes])), dim=-1)
    sims = (img @ txt.T).tolist()
    n = len(pairs)

    def recall(matrix, k):
        hits = 0
        for i in range(n):
            better_or_equal = sum(1 for j in range(n) if matrix[i][j] >= matrix[i][i])
            hits += better_or_equal <= k
        return hits / n

    transposed = [[sims[j][i] for j in range(n)] for i in range(n)]
    predicted = (img @ cls.T).argmax(dim=1).tolist()
    accuracy = sum(classes[p] == pair.meta["label"] for p, pair in zip(predicted, pairs, strict=True)) / n
    return {"image_to_text": {"R@1": recall(sims, 1), "R@5": recall(sims, 5)},
            "text_to_image": {"R@1": recall(transposed, 1), "R@5": recall(transposed, 5)}, "accuracy": accuracy}


def test_eval_equals_a_direct_open_clip_computation(weights, clean_pairs, tmp_path):
    pairs = [Pair(p.key, p.image, p.caption, {"label": ["red", "blue", "green"][i % 3]})
             for i, p in enumerate(clean_pairs[:24])]
    write_pair_shards(tmp_path / "shards", pairs, 10)
    result = evaluate_clip(EvalClipArgs(shards=str(tmp_path / "shards"), model="curate-tiny-clip",
                                        pretrained=str(weights), label_column="label", template="a {} shape"))
    expected = direct(weights, pairs, ["blue", "green", "red"], "a {} shape")
    assert result["samples"] == 24 and result["shards"] == 3
    for direction in ("image_to_text", "text_to_image"):
        assert result[direction] == pytest.approx(expected[direction])
    assert result["zero_shot"] == {"label_column": "label", "template": "a {} shape", "classes": 3,
                                   "accuracy": pytest.approx(expected["accuracy"])}

    net = tmp_path / "net"
    net.mkdir()
    (net / "model.safetensors").write_bytes(weights.read_bytes())
    (net / "filter_net.json").write_text(json.dumps({"model": "curate-tiny-clip", "weights": "model.safetensors",
                                                     "threshold": 0.5, "roc_auc": 0.9}))
    again = evaluate_clip(EvalClipArgs(shards=str(tmp_path / "shards" / "{00000..00002}.tar"), filter_net=str(net)))
    assert again["image_to_text"] == result["image_to_text"]


def test_missing_labels_and_models_are_one_line(weights, clean_pairs, tmp_path):
    write_pair_shards(tmp_path, clean_pairs[:3], 10)
    with pytest.raises(UserError) as err:
        evaluate_clip(EvalClipArgs(shards=str(tmp_path), model="curate-tiny-clip", pretrained=str(weights),
                                   label_column="label"))
    assert str(err.value) == "--label-column label: 3 of 3 samples have no such field in their .json"
    with pytest.raises(UserError) as err:
        evaluate_clip(EvalClipArgs(shards=str(tmp_path), model="curate-tiny-clip"))
    assert str(err.value) == ("give --model NAME --pretrained PATH (a state dict or an open_clip_train checkpoint), "
                              "or --filter-net DIR")
