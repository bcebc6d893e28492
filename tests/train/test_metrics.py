"""Retrieval recall, zero-shot accuracy, ROC-AUC and the equal-error threshold on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from curate.train.metrics import equal_error_threshold, retrieval_recall, roc_auc, zero_shot_accuracy


def test_identical_embeddings_retrieve_their_own_pair():
    emb = np.eye(6)
    assert retrieval_recall(emb, emb) == {"image_to_text": {"R@1": 1.0, "R@5": 1.0},
                                          "text_to_image": {"R@1": 1.0, "R@5": 1.0}}


def test_ties_earn_no_credit():
    emb = np.tile([[1.0, 0.0]], (6, 1))  # every pair scores the same: the true one ranks last
    assert retrieval_recall(emb, emb)["image_to_text"] == {"R@1": 0.0, "R@5": 0.0}


def test_recall_counts_ranks_in_each_direction():
    image = np.eye(3)
    text = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # rows 1 and 2 swapped
    result = retrieval_recall(image, text, ks=(1, 2))
    assert result == {"image_to_text": {"R@1": 1 / 3, "R@2": 1 / 3}, "text_to_image": {"R@1": 1 / 3, "R@2": 1 / 3}}
    text = np.array([[1.0, 0, 0], [0, 0.8, 0.6], [0, 0.6, 0.8]])
    result = retrieval_recall(image, text, ks=(1,))
    assert result == {"image_to_text": {"R@1": 1.0}, "text_to_image": {"R@1": 1.0}}


def test_zero_shot_accuracy():
    classes = np.array([[1.0, 0], [0, 1.0]])
    images = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    assert zero_shot_accuracy(images, classes, np.array([0, 1, 1])) == pytest.approx(2 / 3)


def test_roc_auc_counts_pairs_and_halves_ties():
    assert roc_auc([0.9, 0.8], [0.1, 0.85]) == 0.75
    assert roc_auc([0.5], [0.5]) == 0.5
    assert roc_auc([1.0, 2.0], [0.0]) == 1.0
    with pytest.raises(ValueError):
        roc_auc([], [0.1])


def test_equal_error_threshold():
    assert equal_error_threshold([0.6, 0.7], [0.1, 0.2]) == pytest.approx(0.4)  # separable: halfway
    # one negative above one positive: t=0.55 rejects 1 of 4 positives and accepts 1 of 4 negatives
    pos, neg = [0.5, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.6]
    t = equal_error_threshold(pos, neg)
    assert np.mean(np.array(pos) < t) == np.mean(np.array(neg) >= t) == 0.25
