"""The gradient-based inner loop, vectorised over the tasks of a batch.

The adapted parameters are the meta-parameters tiled on a leading task axis, so
one loop of batched matmuls adapts every task at once. Each task's inner loss
depends only on its own copy, so the gradient of the *sum* of task losses with
respect to the tiled copy is exactly each task's own gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from tfmetarec.learners.losses import task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.types import MASK, RATING, Episode, features_of


def tile_for_tasks(value: tf.Tensor, tasks: tf.Tensor) -> tf.Tensor:
    """Copy a parameter once per task: ``[...] -> [T, ...]`` (differentiable)."""
    return tf.broadcast_to(value[None], tf.concat([[tasks], tf.shape(value)], axis=0))


def inner_loop(
    model: MetaModel,
    params: Mapping[str, tf.Tensor],
    adapt_names: Sequence[str],
    support: Episode,
    steps: int,
    learning_rates: Sequence[Mapping[str, tf.Tensor]],
    first_order: bool = False,
) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
    """Run ``steps`` SGD steps on each task's support loss.

    Args:
        model: the model whose ``forward`` is differentiated.
        params: every parameter of the model (meta-parameters, untiled).
        adapt_names: the parameters that adapt; the others stay shared.
        support: padded support part of an episode (features, rating, mask).
        steps: number of inner steps (unrolled: the graph holds each step).
        learning_rates: one mapping per step from parameter name to a learning
            rate tensor (a scalar, or the parameter's shape for per-parameter
            rates); a single mapping is reused for every step.
        first_order: stop gradients through the inner gradients (FOMAML).

    Returns:
        The adapted parameters (``[T, ...]`` each) with the model's
        ``task_context(support)`` (values such as the support size, not
        parameters: they get no gradient step), and the support loss
        ``[T]`` before each step (for diagnostics).
    """
    features = features_of(support)
    tasks = tf.shape(support[MASK])[0]
    context = model.task_context(support)
    params = {**params, **context}
    fast = {name: tile_for_tasks(params[name], tasks) for name in adapt_names}
    losses = []
    for step in range(steps):
        rates = learning_rates[min(step, len(learning_rates) - 1)]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(list(fast.values()))
            pred = model.forward({**params, **fast}, features)
            per_task = task_mse(pred, support[RATING], support[MASK])
            total = tf.reduce_sum(per_task)
        grads = tape.gradient(total, fast)
        losses.append(per_task)
        new_fast = {}
        for name, value in fast.items():
            grad = grads[name]
            if grad is None:
                grad = tf.zeros_like(value)
            if first_order:
                grad = tf.stop_gradient(grad)
            new_fast[name] = value - tf.cast(rates[name], value.dtype) * grad
        fast = new_fast
    return {**fast, **context}, losses
