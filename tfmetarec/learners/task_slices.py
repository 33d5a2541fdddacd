"""A meta-step's gradients computed on equal slices of the task batch.

The meta-gradient of a batch is the mean over its real tasks of each task's own (for learners
whose :attr:`~tfmetarec.learners.MetaLearner.splits_by_task` is True), so it can be computed on
slices of the task axis and the slices' results averaged, weighted by their real tasks. Under
XLA on a CPU, the slices are separate launches of one compiled program that TF's executor runs
at the same time on different cores (``MetaTrainer(task_chunks=)``); the slices have equal
sizes, so the program compiles once per support bucket, as the whole batch's would.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfmetarec.types import TASK_MASK, Episode

Gradients = tuple[list[tf.Tensor], dict[str, tf.Tensor]]


def equal_slices(tasks: int | None, most: int) -> int:
    """How many equal slices a task axis of ``tasks`` is cut into: the largest divisor of
    ``tasks`` that is at most ``most`` (1 when the size is not known while tracing)."""
    if tasks is None or tasks < 2:
        return 1
    return max(k for k in range(1, min(int(most), tasks) + 1) if tasks % k == 0)


def sliced_gradients(gradients_of: Callable[[Episode], Gradients], episode: Episode, slices: int) -> Gradients:
    """``gradients_of`` (a batch's gradients and logs, each a mean over its real tasks) on
    ``slices`` equal slices of ``episode``'s task axis, averaged weighted by the slices' real
    tasks: the whole batch's gradients and logs, to float rounding."""
    size = episode[TASK_MASK].shape[0] // slices
    grads: list[tf.Tensor] = []
    logs: dict[str, tf.Tensor] = {}
    counts = []
    for k in range(slices):
        part = tf.nest.map_structure(lambda x, k=k: x[k * size:(k + 1) * size], episode)
        part_grads, part_logs = gradients_of(part)
        count = tf.reduce_sum(tf.cast(part[TASK_MASK], tf.float32))
        counts.append(count)
        weighted = [g * tf.cast(count, g.dtype) for g in part_grads]
        grads = weighted if not grads else [a + b for a, b in zip(grads, weighted, strict=True)]
        for key, value in part_logs.items():
            logs[key] = logs.get(key, 0.0) + value * tf.cast(count, value.dtype)
    total = tf.maximum(tf.add_n(counts), 1.0)
    return ([g / tf.cast(total, g.dtype) for g in grads],
            {key: value / tf.cast(total, value.dtype) for key, value in logs.items()})
