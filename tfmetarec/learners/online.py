"""Bounded row memories for states that grow as ratings arrive one at a time.

A memory is a dict of tensors ``[T, N, ...]`` plus a ``mask`` ``[T, N]`` (1 for a held
row). :func:`append_rows` adds new rows and keeps the most recent ``capacity`` held rows,
in arrival order, at the front: a fixed-size state however many ratings arrive. It uses
only gathers and scatters (no sort), so it converts to ONNX.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf


def append_rows(old: Mapping[str, tf.Tensor], new: Mapping[str, tf.Tensor], capacity: int | tf.Tensor,
                mask: str = "mask") -> dict[str, tf.Tensor]:
    """``old`` then ``new`` (same keys, rows on axis 1), keeping the last ``capacity`` rows whose
    ``mask`` is 1, in order, as ``[T, capacity, ...]`` (the rest zero, mask 0)."""
    both = {k: tf.concat([old[k], new[k]], axis=1) for k in old}
    held = tf.cast(both[mask] > 0, tf.int32)
    rank = tf.cumsum(held, axis=1)  # 1.. for held rows
    total = rank[:, -1:]
    keep = (held > 0) & (rank > total - capacity)
    slot = tf.where(keep, tf.cumsum(tf.cast(keep, tf.int32), axis=1) - 1, capacity)  # dropped rows -> a spare slot
    tasks = tf.shape(held)[0]
    index = tf.stack([tf.broadcast_to(tf.range(tasks)[:, None], tf.shape(slot)), slot], axis=-1)
    out = {}
    for k, value in both.items():
        value = tf.where(tf.reshape(keep, tf.concat([tf.shape(keep), tf.ones([len(value.shape) - 2], tf.int32)], 0)),
                         value, tf.zeros_like(value))
        shape = tf.concat([[tasks, capacity + 1], tf.shape(value)[2:]], 0)
        if any(d == 0 for d in value.shape[2:]):  # e.g. no user fields: nothing to scatter
            out[k] = tf.zeros(shape, value.dtype)[:, :capacity]
            continue
        out[k] = tf.scatter_nd(index, value, shape)[:, :capacity]
    return out


def empty_rows(like: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A memory with the keys, dtypes and trailing shapes of ``like`` and no rows."""
    return {k: v[:, :0] for k, v in like.items()}


def fit_rows(memory: Mapping[str, tf.Tensor], capacity: int | tf.Tensor, mask: str = "mask") -> dict[str, tf.Tensor]:
    """``memory`` as exactly ``[T, capacity, ...]``: the last ``capacity`` held rows, padded."""
    return append_rows(empty_rows(memory), memory, capacity, mask)
