"""Masked losses over padded task batches."""

from __future__ import annotations

import tensorflow as tf


def task_mse(pred: tf.Tensor, rating: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean squared error of each task over its real rows: ``[T, N] -> [T]``.

    A task with no real rows has loss 0 (and so a zero gradient).
    """
    rating = tf.cast(rating, pred.dtype)
    mask = tf.cast(mask, pred.dtype)
    squared = tf.square(pred - rating) * mask
    return tf.reduce_sum(squared, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


def mean_over_tasks(per_task: tf.Tensor, task_mask: tf.Tensor) -> tf.Tensor:
    """Average of per-task values over the real tasks of a batch."""
    task_mask = tf.cast(task_mask, per_task.dtype)
    return tf.reduce_sum(per_task * task_mask) / tf.maximum(tf.reduce_sum(task_mask), 1.0)
