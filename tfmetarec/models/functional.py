"""Parameter-explicit building blocks shared by the models.

Every op here takes its weights as tensors, so a learner can call a model with
*adapted* weights. A weight may carry a leading task axis ``T`` (one copy per
task of a batch); the inputs then carry the same leading axis. This is what
lets one inner loop adapt a whole batch of tasks with batched matmuls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

try:  # where a traced op will run: XLA fuses what the TF executor runs op by op
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _in_xla_graph
except ImportError:  # pragma: no cover - a TensorFlow without it: treat every graph as unfused
    def _in_xla_graph(graph: Any) -> bool:
        return False


def compiled_by_xla() -> bool:
    """True while tracing a function that XLA compiles (``jit_compile=True``)."""
    return not tf.executing_eagerly() and _in_xla_graph(tf.compat.v1.get_default_graph())


def graph_function(fn: Callable, **kwargs: Any) -> Any:
    """``tf.function(fn, **kwargs)`` without AutoGraph, the way every function of the library is
    traced: its code branches and loops on Python values only (what depends on a tensor is written
    as ``tf.cond``, ``tf.where`` or ``tf.while_loop``), so converting every function a trace calls
    would only cost tracing time (an export took ~1.3x longer with AutoGraph: BENCHMARKS.md)."""
    return tf.function(fn, autograph=False, **kwargs)


def is_task_batched(weight: tf.Tensor, base_rank: int) -> bool:
    """True when ``weight`` has one more (task) axis than its base rank."""
    return weight.shape.rank == base_rank + 1


def task_bias(bias: tf.Tensor) -> tf.Tensor:
    """``bias`` ready to add to a ``[T, N, out]`` activation: a per-task ``[T, out]`` bias gets a row
    axis, except with one task known while tracing (``[1, out]`` broadcasts as it is: no slicing op,
    nor its gradient, in a one-user serving graph); a shared ``[out]`` bias is returned as is."""
    if not is_task_batched(bias, 1) or bias.shape[0] == 1:
        return bias
    return bias[:, None, :]


def dense(
    x: tf.Tensor,
    kernel: tf.Tensor,
    bias: tf.Tensor | None = None,
    activation: str | None = None,
) -> tf.Tensor:
    """``activation(x @ kernel + bias)`` for shared or per-task weights.

    ``x`` is ``[..., in]``. A shared kernel is ``[in, out]``; a per-task kernel
    is ``[T, in, out]`` and then ``x`` must be ``[T, N, in]``.
    """
    if is_task_batched(kernel, 2) and kernel.shape[0] == 1 and x.shape.rank == 3 and kernel.shape[1:].is_fully_defined():
        # one task, known while tracing (a one-user serving request): a plain matmul, which runs
        # at half the batched one's cost per call on CPU
        y = tf.reshape(tf.matmul(tf.reshape(x, [-1, kernel.shape[1]]), tf.reshape(kernel, kernel.shape[1:])),
                       [1, -1, kernel.shape[-1]])
        if bias is not None:
            y = y + task_bias(bias)
    elif (is_task_batched(kernel, 2) and kernel.shape[-1] == 1 and x.shape.rank == 3
          and x.shape[-1] is not None and x.shape[-1] == kernel.shape[-2] and not compiled_by_xla()):
        # one output per task (a score head), op by op (a default SavedModel): a product and a sum,
        # it and its gradients elementwise, as a batched matrix-vector product costs ~10x more per
        # call on CPU; XLA runs the product faster than the sum
        y = tf.reduce_sum(x * tf.linalg.matrix_transpose(kernel), axis=-1, keepdims=True)
        if bias is not None:
            y = y + task_bias(bias)
    elif is_task_batched(kernel, 2):
        y = tf.matmul(x, kernel)
        if bias is not None:
            y = y + task_bias(bias)
    else:
        lead = tf.shape(x)[:-1]
        flat = tf.reshape(x, [-1, x.shape[-1]])
        y = tf.matmul(flat, kernel)
        y = tf.reshape(y, tf.concat([lead, [kernel.shape[-1]]], axis=0))
        if bias is not None:
            y = y + task_bias(bias)
    return activate(y, activation)


def task_matmul(a: tf.Tensor, b: tf.Tensor, transpose_a: bool = False, transpose_b: bool = False) -> tf.Tensor:
    """``a @ b`` for ``[T, m, k]`` and ``[T, k, n]`` (either transposed on its last two axes): one
    product per task. With one task known while tracing, a plain matmul (see :func:`dense`)."""
    if a.shape[0] == 1 and b.shape[0] == 1 and a.shape.rank == b.shape.rank == 3:
        return tf.matmul(a[0], b[0], transpose_a=transpose_a, transpose_b=transpose_b)[None]
    return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def activate(x: tf.Tensor, activation: str | None) -> tf.Tensor:
    """Apply a named activation (``None``/``"linear"``, ``relu``, ``sigmoid``, ``tanh``)."""
    if activation in (None, "linear"):
        return x
    if activation == "relu":
        return tf.nn.relu(x)
    if activation == "sigmoid":
        return tf.sigmoid(x)
    if activation == "tanh":
        return tf.tanh(x)
    raise ValueError(f"Unknown activation {activation!r}; use relu, sigmoid, tanh or linear.")


def embed(table: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """Look up ``ids`` in a shared ``[V, d]`` or per-task ``[T, V, d]`` table."""
    if is_task_batched(table, 2):
        return tf.gather(table, ids, batch_dims=1)
    return tf.gather(table, ids)


def add_mlp(owner: Any, prefix: str, width: int, units: Sequence[int], seed: int | None, seed_offset: int,
            last_bias: float = 0.0) -> list[str]:
    """Add the weights of a dense stack to the layer ``owner``: ``{prefix}_{k}_kernel``
    (Glorot, seed ``seed + seed_offset + k``) and ``{prefix}_{k}_bias`` (zeros; the
    last starts at ``last_bias``) for each width in ``units``. Returns their names
    in creation order; :func:`mlp` applies the stack."""
    names: list[str] = []
    for k, n in enumerate(units):
        init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + seed_offset + k)
        owner.add_weight(shape=(width, n), initializer=init, name=f"{prefix}_{k}_kernel")
        start = last_bias if k == len(units) - 1 else 0.0
        owner.add_weight(shape=(n,), initializer=keras.initializers.Constant(start), name=f"{prefix}_{k}_bias")
        names += [f"{prefix}_{k}_kernel", f"{prefix}_{k}_bias"]
        width = n
    return names


def mlp(x: tf.Tensor, params: Any, prefix: str, layers: int, from_first_pre_activation: bool = False) -> tf.Tensor:
    """Apply the ``layers`` dense layers added by :func:`add_mlp` under ``prefix``:
    ReLU after each but the last, which is linear. With ``from_first_pre_activation``, ``x``
    is the first layer's ``input @ kernel + bias`` already: the stack goes on from there."""
    for k in range(layers):
        activation = None if k == layers - 1 else "relu"
        if k == 0 and from_first_pre_activation:
            x = activate(x, activation)
            continue
        x = dense(x, params[f"{prefix}_{k}_kernel"], params[f"{prefix}_{k}_bias"], activation)
    return x
