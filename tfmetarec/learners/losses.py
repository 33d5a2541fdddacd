"""Masked losses over padded task batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tensorflow as tf

from tfmetarec.objectives import QueryLoss
from tfmetarec.types import ITEM_FIELDS, ITEM_ID, ITEM_OFFSET, MASK, RATING, USER_FIELDS, USER_ID


def task_mse(pred: tf.Tensor, rating: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean squared error of each task over its real rows: ``[T, N] -> [T]``.

    A task with no real rows has loss 0 (and so a zero gradient).
    """
    rating = tf.cast(rating, pred.dtype)
    mask = tf.cast(mask, pred.dtype)
    squared = tf.square(pred - rating) * mask
    return tf.reduce_sum(squared, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


def task_pairwise_logistic(pred: tf.Tensor, rating: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Pairwise logistic ranking loss of each task: ``[T, N] -> [T]``.

    For every pair of real rows ``(i, j)`` with ``rating_i > rating_j``, the loss is
    ``log(1 + exp(-(pred_i - pred_j)))`` weighted by the gain difference ``2^r_i - 2^r_j``
    (the pairs that move nDCG most count most), averaged over the task's pairs by weight.
    A task without an ordered pair has loss 0.
    """
    pred = tf.cast(pred, tf.float32)
    rating = tf.cast(rating, tf.float32)
    mask = tf.cast(mask, tf.float32)
    gain = tf.pow(2.0, rating)
    ordered = tf.cast(rating[:, :, None] > rating[:, None, :], tf.float32) * mask[:, :, None] * mask[:, None, :]
    weight = ordered * (gain[:, :, None] - gain[:, None, :])
    margin = pred[:, :, None] - pred[:, None, :]
    total = tf.reduce_sum(weight * tf.nn.softplus(-margin), axis=[1, 2])
    return total / tf.maximum(tf.reduce_sum(weight, axis=[1, 2]), 1e-6)


def task_listwise_softmax(pred: tf.Tensor, rating: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Listwise (ListNet) loss of each task: ``[T, N] -> [T]``, the cross-entropy between the
    softmax of the ratings and the softmax of the predictions over the task's real rows."""
    pred = tf.cast(pred, tf.float32)
    rating = tf.cast(rating, tf.float32)
    real = tf.cast(mask, tf.float32) > 0
    very_low = tf.fill(tf.shape(pred), -1e9)
    target = tf.nn.softmax(tf.where(real, rating, very_low), axis=-1)
    log_prob = tf.nn.log_softmax(tf.where(real, pred, very_low), axis=-1)
    per_task = -tf.reduce_sum(tf.where(real, target * log_prob, tf.zeros_like(pred)), axis=-1)
    return per_task * tf.cast(tf.reduce_any(real, axis=-1), tf.float32)


RANKING_LOSSES: dict[str, Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "pairwise": task_pairwise_logistic,
    "listwise": task_listwise_softmax,
}
"""Per-task ranking losses a :class:`~tfmetarec.objectives.QueryLoss` can mix into the rating loss."""


def rating_objective(spec: QueryLoss, pred: tf.Tensor, query: Mapping[str, tf.Tensor],
                     task_mask: tf.Tensor) -> tf.Tensor:
    """``(1 - w) * MSE + w * ranking`` of scored query rows (``w = spec.ranking_weight``),
    averaged over the real tasks; the MSE alone at ``w = 0``."""
    loss = mean_over_tasks(task_mse(pred, query[RATING], query[MASK]), task_mask)
    if spec.ranking_weight <= 0:
        return loss
    ranking = mean_over_tasks(RANKING_LOSSES[spec.ranking_loss](pred, query[RATING], query[MASK]), task_mask)
    return (1.0 - spec.ranking_weight) * loss + spec.ranking_weight * ranking


def mean_over_tasks(per_task: tf.Tensor, task_mask: tf.Tensor) -> tf.Tensor:
    """Average of per-task values over the real tasks of a batch."""
    task_mask = tf.cast(task_mask, per_task.dtype)
    return tf.reduce_sum(per_task * task_mask) / tf.maximum(tf.reduce_sum(task_mask), 1.0)


def in_batch_candidates(query: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Every task's user paired with every query row of the batch: features ``[T, T * Q, ...]``.

    Item inputs are the batch's query rows flattened and repeated for each task;
    user inputs are each task's own (its first query row), repeated over the candidates.
    """
    mask = query[MASK]
    tasks, rows = tf.shape(mask)[0], tf.shape(mask)[1]
    count = tasks * rows
    out = {}
    for key in (ITEM_ID, ITEM_FIELDS, ITEM_OFFSET):
        if key in query:
            value = query[key]
            flat = tf.reshape(value, tf.concat([[count], tf.shape(value)[2:]], axis=0))
            out[key] = tf.broadcast_to(flat[None], tf.concat([[tasks], tf.shape(flat)], axis=0))
    for key in (USER_ID, USER_FIELDS):
        if key in query:
            value = query[key]
            out[key] = tf.broadcast_to(value[:, :1], tf.concat([[tasks, count], tf.shape(value)[2:]], axis=0))
    return out


def in_batch_softmax_loss(
    score_fn: Callable[[dict[str, tf.Tensor]], tf.Tensor],
    query: Mapping[str, tf.Tensor],
    task_mask: tf.Tensor,
    temperature: float = 1.0,
    like_threshold: float = 4.0,
) -> tf.Tensor:
    """Sampled-softmax retrieval loss with the batch's query items as candidates.

    For every liked query row (rating >= ``like_threshold``) of task ``t``, the
    scores ``score_fn`` gives task ``t``'s user on all ``T * Q`` query items of the
    batch (divided by ``temperature``) go through a softmax whose target is that
    row. Padding rows and tasks are no candidates, and neither are other rows holding
    the same item (same in-vocabulary ID): an accidental hit is not a negative.
    (keras-rs 0.4's ``RemoveAccidentalHits`` adds a tiny positive number instead of
    a large negative one, so it does not remove them; hence the mask here.)
    Returns the mean cross-entropy over liked rows (0 when there are none).
    """
    mask = tf.cast(query[MASK], tf.float32)
    tasks, rows = tf.shape(mask)[0], tf.shape(mask)[1]
    count = tasks * rows
    logits = tf.cast(score_fn(in_batch_candidates(query)), tf.float32) / temperature  # [T, C]
    valid = tf.reshape(mask * tf.cast(task_mask, tf.float32)[:, None], [count]) > 0
    logits = tf.where(valid[None, :], logits, tf.fill(tf.shape(logits), -1e9))
    per_row = tf.broadcast_to(logits[:, None, :], [tasks, rows, count])  # one softmax per query row
    labels = tf.one_hot(tf.reshape(tf.range(count), [tasks, rows]), count, dtype=per_row.dtype)
    ids = tf.reshape(query[ITEM_ID], [count]) if ITEM_ID in query else tf.zeros([count], tf.int32)
    # A new item (ID 0) is its own candidate, not a duplicate of every other new item.
    ids = tf.where(ids > 0, ids, -1 - tf.range(count, dtype=ids.dtype))
    duplicate = tf.equal(tf.reshape(ids, [tasks, rows, 1]), ids[None, None, :])
    per_row = tf.where(duplicate & (labels == 0), tf.fill(tf.shape(per_row), -1e9), per_row)
    target = tf.reduce_sum(per_row * labels, axis=-1)
    cross_entropy = tf.reduce_logsumexp(per_row, axis=-1) - target  # [T, Q]
    liked = mask * tf.cast(tf.cast(query[RATING], tf.float32) >= like_threshold, tf.float32)
    liked = liked * tf.cast(task_mask, tf.float32)[:, None]
    return tf.reduce_sum(cross_entropy * liked) / tf.maximum(tf.reduce_sum(liked), 1.0)
