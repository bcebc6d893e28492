"""``curate eval clip``: zero-shot image->text and text->image retrieval (R@1, R@5) of a CLIP on
held-out shards, and zero-shot classification where the samples carry a label
(``--label-column``; class prompts from ``--template``). Row i's image matches row i's caption only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curate.errors import UserError
from curate.train.metrics import retrieval_recall, zero_shot_accuracy
from curate.train.shards import expand_shards, read_pairs


@dataclass
class EvalClipArgs:
    shards: str
    model: str | None = None
    pretrained: str | None = None
    filter_net: str | None = None
    label_column: str | None = None
    template: str = "a photo of {}"
    batch_size: int = 256


def resolve_model(args: EvalClipArgs) -> tuple[str, Path]:
    """(open_clip model name, weights file) from ``--filter-net DIR`` or ``--model`` + ``--pretrained``."""
    if args.filter_net:
        from curate.train.filter_net import load_filter_net

        net = load_filter_net(args.filter_net)
        if args.model and args.model != net.model:
            raise UserError(f"--model {args.model}: the filtering network in {args.filter_net} is a {net.model}")
        return net.model, net.weights
    if not args.model or not args.pretrained:
        raise UserError("give --model NAME --pretrained PATH (a state dict or an open_clip_train checkpoint), "
                        "or --filter-net DIR")
    from curate.models.weights import resolve_weights

    return args.model, resolve_weights(args.pretrained, "--pretrained")


def evaluate_clip(args: EvalClipArgs) -> dict:
    """The metrics as one JSON-ready dict."""
    if args.label_column and "{}" not in args.template:
        raise UserError(f"--template {args.template!r}: needs {{}} where the label goes, e.g. 'a photo of {{}}'")
    name, weights = resolve_model(args)
    files = expand_shards(args.shards)
    pairs = list(read_pairs(files))
    from curate.train.contrastive import embed, embed_texts, load_model, pair_tensors

    model, preprocess, tokenizer = load_model(name, weights)
    images, texts = pair_tensors(pairs, preprocess, tokenizer)
    image_emb, text_emb = embed(model, images, texts, args.batch_size)
    result = {"model": name, "weights": str(weights), "shards": len(files), "samples": len(pairs),
              **retrieval_recall(image_emb, text_emb)}
    if args.label_column:
        labels = [pair.meta.get(args.label_column) for pair in pairs]
        unlabelled = sum(label is None for label in labels)
        if unlabelled:
            raise UserError(f"--label-column {args.label_column}: {unlabelled} of {len(pairs)} samples have no such "
                            "field in their .json")
        classes = sorted({str(label) for label in labels})
        class_emb = embed_texts(model, tokenizer([args.template.format(c) for c in classes]), args.batch_size)
        index = {c: i for i, c in enumerate(classes)}
        result["zero_shot"] = {"label_column": args.label_column, "template": args.template, "classes": len(classes),
                               "accuracy": zero_shot_accuracy(image_emb, class_emb,
                                                              [index[str(label)] for label in labels])}
    return result


def table_rows(result: dict) -> list[tuple[str, str]]:
    """(metric, value) rows for the console table."""
    rows = [(f"{direction.replace('_', ' ')} {k}", f"{v:.4f}")
            for direction in ("image_to_text", "text_to_image") for k, v in result[direction].items()]
    if "zero_shot" in result:
        zs = result["zero_shot"]
        rows.append((f"zero-shot accuracy ({zs['classes']} classes of {zs['label_column']})", f"{zs['accuracy']:.4f}"))
    return rows
