"""Per-task rating and ranking metrics (MeLU protocol).

Every metric is computed per task over the task's query items and then
averaged over tasks: MAE and RMSE of the predicted ratings, and nDCG@k that
ranks only the task's query items by predicted rating with gain ``2**r - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error of one task."""
    return float(np.mean(np.abs(pred - true)))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error of one task."""
    return float(np.sqrt(np.mean(np.square(pred - true))))


def dcg_at_k(ranked_gains: np.ndarray, k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains in rank order."""
    gains = ranked_gains[:k]
    return float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))


def ndcg_at_k(pred: np.ndarray, true: np.ndarray, k: int) -> float:
    """nDCG@k of one task's query items ranked by ``pred``, gain ``2**true - 1``.

    Ties in ``pred`` keep the items' original order. A task whose items all
    have zero gain scores 0.
    """
    gains = np.power(2.0, true) - 1.0
    order = np.argsort(-pred, kind="stable")
    ideal = dcg_at_k(np.sort(gains)[::-1], k)
    if ideal <= 0:
        return 0.0
    return dcg_at_k(gains[order], k) / ideal


def task_metrics(pred: np.ndarray, true: np.ndarray, ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """MAE, RMSE and nDCG@k of one task's query predictions."""
    pred = np.asarray(pred, dtype="float64")
    true = np.asarray(true, dtype="float64")
    if pred.shape != true.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(f"Expected two equal non-empty 1-D arrays, got {pred.shape} and {true.shape}.")
    out = {"MAE": mae(pred, true), "RMSE": rmse(pred, true)}
    for k in ks:
        out[f"nDCG@{k}"] = ndcg_at_k(pred, true, k)
    return out


def average_metrics(per_task: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over tasks (each task weighs the same)."""
    if not per_task:
        return {}
    keys = per_task[0].keys()
    return {k: float(np.mean([m[k] for m in per_task])) for k in keys}


# -- the binarised view: a rating of ``like_threshold`` or more is a like ---------------

LIKE_THRESHOLD = 4.0


def auc(pred: np.ndarray, liked: np.ndarray) -> float:
    """Area under the ROC curve of ``pred`` separating liked from other items.

    Ties count half. ``nan`` when the task has only likes or only non-likes.
    """
    pos, neg = pred[liked], pred[~liked]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def binary_metrics(
    results: Sequence[tuple[np.ndarray, np.ndarray]],
    like_threshold: float = LIKE_THRESHOLD,
) -> dict[str, float]:
    """Precision, recall and F1 of predicted likes, and per-task AUC.

    A predicted rating of ``like_threshold - 0.5`` or more counts as a predicted
    like (the rating it would round to). Precision, recall and F1 pool every
    query row of the scenario; AUC is averaged over the tasks that have both
    liked and other items.
    """
    tp = fp = fn = 0
    aucs = []
    for pred, true in results:
        liked = np.asarray(true) >= like_threshold
        called = np.asarray(pred) >= like_threshold - 0.5
        tp += int(np.sum(liked & called))
        fp += int(np.sum(~liked & called))
        fn += int(np.sum(liked & ~called))
        value = auc(np.asarray(pred, dtype="float64"), liked)
        if not np.isnan(value):
            aucs.append(value)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "F1": f1,
        "AUC": float(np.mean(aucs)) if aucs else float("nan"),
    }


def coverage_at_k(ranked_items: Sequence[np.ndarray], candidates: np.ndarray, k: int) -> float:
    """Share of the candidate items that appear in at least one top-``k`` list."""
    candidates = np.unique(candidates)
    if len(candidates) == 0:
        return 0.0
    shown = np.unique(np.concatenate([np.asarray(r)[:k] for r in ranked_items])) if ranked_items else []
    return float(len(np.intersect1d(shown, candidates)) / len(candidates))
