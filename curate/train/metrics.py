"""Scores of image-text models on paired embeddings: retrieval recall, zero-shot accuracy,
ROC-AUC and the equal-error threshold (pure numpy, so they are exact on hand-made cases)."""

from __future__ import annotations

import numpy as np


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict:
    """Image->text and text->image recall@k of row-aligned, L2-normalised embeddings: row i's
    image matches row i's text only. Ties rank the true pair after every equal score (no credit
    for a tie), so identical embeddings for every row give R@1 = 1/n, not 1."""
    sims = np.asarray(image_emb, dtype=np.float64) @ np.asarray(text_emb, dtype=np.float64).T
    return {"image_to_text": _recall(sims, ks), "text_to_image": _recall(sims.T, ks)}


def _recall(sims: np.ndarray, ks: tuple[int, ...]) -> dict:
    true = np.diag(sims)[:, None]
    rank = (sims >= true).sum(axis=1)  # 1 when the true pair strictly beats every other one
    return {f"R@{k}": float(np.mean(rank <= k)) for k in ks}


def zero_shot_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose most similar class prompt is their label (an index into class_emb)."""
    predicted = np.argmax(np.asarray(image_emb) @ np.asarray(class_emb).T, axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting one half (the Mann-Whitney U)."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.sort(np.asarray(negative, dtype=np.float64))
    if not len(pos) or not len(neg):
        raise ValueError("roc_auc needs at least one positive and one negative score")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def equal_error_threshold(positive: np.ndarray, negative: np.ndarray) -> float:
    """The threshold t (keep score >= t) where the share of positives below t and the share of
    negatives at or above t are closest (the equal-error point; among equally close ones, the
    fewest errors in all), halfway between the two scores that bound it so neither is on the edge."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    candidates = np.unique(np.concatenate([pos, neg, [np.inf]]))
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    false_reject = np.searchsorted(pos_sorted, candidates, side="left") / len(pos)
    false_accept = 1 - np.searchsorted(neg_sorted, candidates, side="left") / len(neg)
    best = int(np.lexsort((false_reject + false_accept, np.abs(false_reject - false_accept)))[0])
    if best == 0:
        return float(candidates[0])
    return float((candidates[best - 1] + candidates[best]) / 2) if np.isfinite(candidates[best]) else float(
        candidates[best - 1] + 1e-6)
