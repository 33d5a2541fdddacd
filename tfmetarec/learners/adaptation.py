"""The gradient-based inner loop, vectorised over the tasks of a batch.

The adapted parameters are the meta-parameters tiled on a leading task axis, so
one loop of batched matmuls adapts every task at once. Each task's inner loss
depends only on its own copy, so the gradient of the *sum* of task losses with
respect to the tiled copy is exactly each task's own gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal

import tensorflow as tf

from tfmetarec.learners.losses import task_mse
from tfmetarec.learners.online import append_rows, fit_rows
from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.options import AtLeast
from tfmetarec.types import ITEM_ID, MASK, RATING, USER_FIELDS, USER_ID, Episode, Features, features_of


def tile_for_tasks(value: tf.Tensor, tasks: tf.Tensor) -> tf.Tensor:
    """Copy a parameter once per task: ``[...] -> [T, ...]`` (differentiable)."""
    return tf.broadcast_to(value[None], tf.concat([[tasks], tf.shape(value)], axis=0))


def inner_steps(
    model: MetaModel,
    params: Mapping[str, tf.Tensor],
    adapt_names: Sequence[str],
    support: Episode,
    steps: int,
    learning_rates: Sequence[Mapping[str, tf.Tensor]],
    first_order: bool = False,
    start: Mapping[str, tf.Tensor] | None = None,
    context: Mapping[str, tf.Tensor] | None = None,
) -> Iterator[tuple[dict[str, tf.Tensor], tf.Tensor | None]]:
    """The inner loop one step at a time: yields ``(state, loss)`` first for the starting
    weights (``loss`` None), then after each of ``steps`` SGD steps on each task's support
    loss (``loss`` ``[T]``: the support loss the step descended from).

    Args:
        model: the model whose ``forward`` is differentiated.
        params: every parameter of the model (meta-parameters, untiled).
        adapt_names: the parameters that adapt; the others stay shared.
        support: padded support part of an episode (features, rating, mask).
        steps: number of inner steps (unrolled: the graph holds each step).
        learning_rates: one mapping per step from parameter name to a learning
            rate tensor (a scalar, or the parameter's shape for per-parameter
            rates); the last mapping is reused for any later step.
        first_order: stop gradients through the inner gradients (FOMAML).
        start: per-task weights ``[T, ...]`` to start from (an adapted state being
            updated) instead of the meta-parameters.
        context: the task context to score with (default: the support's own).

    Each state holds the adapted parameters (``[T, ...]`` each) and the model's
    ``task_context(support)`` (values such as the support size, not parameters: they get
    no gradient step).

    What the adapted parameters do not touch (:meth:`~tfmetarec.models.MetaModel.represent`:
    MeLU's field embeddings when only its decision layers adapt) is computed once, before the
    first step; every step runs only :meth:`~tfmetarec.models.MetaModel.decide` on it. When the
    first decision layer then adapts with scalar step sizes, its update is kept as a low-rank
    product with that representation (:class:`LowRankKernel`). The meta-gradients are the same
    (tests/learners/test_learner_gradients.py).
    """
    features = features_of(support)
    tasks = tf.shape(support[MASK])[0]
    context = model.task_context(support) if context is None else dict(context)
    params = {**params, **context}
    hoisted = model.represent(params, features, adapt_names) if steps else None
    if start is None:
        fast = {name: tile_for_tasks(params[name], tasks) for name in adapt_names}
    else:
        fast = {name: tf.convert_to_tensor(start[name]) for name in adapt_names}
    low_rank = LowRankKernel.of(model, adapt_names, learning_rates, hoisted, params if start is None else start,
                                first_order)
    yield {**fast, **context}, None
    for step in range(steps):
        rates = learning_rates[min(step, len(learning_rates) - 1)]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(list(fast.values()))
            if low_rank is not None:
                pre = low_rank.pre_activation({**params, **fast})
                tape.watch(pre)
                pred = model.decide_from_first_layer({**params, **fast}, pre, features)
            elif hoisted is not None:
                pred = model.decide({**params, **fast}, hoisted, features)
            else:
                pred = model.forward({**params, **fast}, features)
            per_task = task_mse(pred, support[RATING], support[MASK])
            total = tf.reduce_sum(per_task)
        grads = tape.gradient(total, fast if low_rank is None else {**fast, LowRankKernel.KEY: pre})
        new_fast = {}
        for name, value in fast.items():
            if low_rank is not None and name == low_rank.kernel:
                new_fast[name] = low_rank.step(grads[LowRankKernel.KEY], rates[name])
                continue
            grad = grads[name]
            if grad is None:
                grad = tf.zeros_like(value)
            if first_order:
                grad = tf.stop_gradient(grad)
            new_fast[name] = value - tf.cast(rates[name], value.dtype) * grad
        fast = new_fast
        yield {**fast, **context}, per_task


class LowRankKernel:
    """The first decision layer's kernel through the inner loop, kept as ``W_0 - X^T C``.

    With the representation ``X [T, S, in]`` fixed (:meth:`~tfmetarec.models.MetaModel.represent`)
    and plain SGD with scalar step sizes, every step's kernel gradient is ``X^T D`` (``D``: the
    gradient at the layer's pre-activation, ``[T, S, out]``), so after ``k`` steps
    ``W_k = W_0 - X^T C_k`` with ``C_k`` the rate-weighted sum of the ``D``s. The pre-activation is
    then ``X W_0 - (X X^T) C_k + b``: ``X W_0`` once (a shared matmul, no per-task copy of
    ``W_0``), the ``[T, S, S]`` Gram matrix once, and per step a product with it, instead of
    per-task ``[in, out]`` kernels and their gradients at every step. The yielded kernels are
    ``W_0 - X^T C_k`` (a compiled step computes only those it uses). The function is the same as
    updating the kernel itself, and so is every meta-gradient (tests/learners/test_learner_gradients.py).
    """

    KEY = "__first_layer_pre_activation"

    def __init__(self, kernel: str, bias: str, x: tf.Tensor, start_kernel: tf.Tensor, first_order: bool):
        self.kernel, self.bias = kernel, bias
        self.x = x
        self.start = start_kernel  # shared [in, out] or per task [T, in, out]: W_0 - X^T C broadcasts
        self.first_order = first_order
        self.base = F.dense(x, start_kernel)  # X W_0: [T, S, out]
        self.gram = F.task_matmul(x, x, transpose_b=True)  # [T, S, S]
        self.acc: tf.Tensor | None = None

    @classmethod
    def of(cls, model: MetaModel, adapt_names: Sequence[str], learning_rates: Sequence[Mapping[str, tf.Tensor]],
           hoisted: Any, start: Mapping[str, tf.Tensor], first_order: bool) -> LowRankKernel | None:
        """The low-rank form of ``model``'s first decision layer, when it applies: the layer's kernel
        adapts with a scalar step size at every step, the representation is fixed
        (``hoisted``, ``[T, S, in]``) and the support is no wider than the layer's input (checked
        when both are known while tracing; a graph traced for every support size uses the form
        for all of them)."""
        layer = model.first_decision_layer()
        if layer is None or not isinstance(hoisted, tf.Tensor) or hoisted.shape.rank != 3:
            return None
        kernel, bias = layer
        if kernel not in adapt_names:
            return None
        if any(tf.convert_to_tensor(rates[kernel]).shape.rank != 0 for rates in learning_rates):
            return None  # per-parameter step sizes (Meta-SGD): the update is not low-rank
        rows, width = hoisted.shape[1], hoisted.shape[2]
        if rows is not None and width is not None and rows > width:
            return None  # the Gram matrix would cost more than the kernel
        return cls(kernel, bias, hoisted, start[kernel], first_order)

    def pre_activation(self, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``X W_k + b``: ``[T, S, out]``."""
        z = self.base if self.acc is None else self.base - F.task_matmul(self.gram, self.acc)
        return z + F.task_bias(params[self.bias])

    def step(self, grad: tf.Tensor | None, rate: tf.Tensor) -> tf.Tensor:
        """One SGD step from the gradient at the pre-activation; returns ``W_{k+1}``."""
        if grad is None:
            grad = tf.zeros_like(self.base)
        if self.first_order:
            grad = tf.stop_gradient(grad)
        scaled = tf.cast(rate, grad.dtype) * grad
        self.acc = scaled if self.acc is None else self.acc + scaled
        # first order: no gradient through X (the Ds in C are stopped already), as the loop that
        # stops each step's kernel gradient; the step sizes in C still get theirs
        x = tf.stop_gradient(self.x) if self.first_order else self.x
        return self.start - F.task_matmul(x, self.acc, transpose_a=True)  # W_0 - X^T C: [T, in, out]


def inner_loop(model: MetaModel, params: Mapping[str, tf.Tensor], adapt_names: Sequence[str], support: Episode,
               steps: int, learning_rates: Sequence[Mapping[str, tf.Tensor]], first_order: bool = False,
               **where: Any) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
    """:func:`inner_steps` run to the end (``where``: its ``start`` and ``context``): the adapted
    state (parameters ``[T, ...]`` and the task context) and the support loss ``[T]`` before each
    step (for diagnostics)."""
    losses = []
    state: dict[str, tf.Tensor] = {}
    for state, loss in inner_steps(model, params, adapt_names, support, steps, learning_rates, first_order, **where):
        if loss is not None:
            losses.append(loss)
    return state, losses


UPDATE_MODES = ("new", "history")
HISTORY = "history_"  # prefix of the rows a state keeps for update_mode="history"
ROW_KEYS = (USER_ID, ITEM_ID, USER_FIELDS, RATING, MASK)


class GradientUpdate:
    """``update`` for learners that adapt by SGD (MAML family, Reptile, fine-tuning).

    Both modes take ``update_steps`` SGD steps from the cached adapted weights.
    ``update_mode="history"`` (the default) takes them on the last ``history_size``
    ratings (the new ones included), which the state keeps: on the streaming protocol it
    tracks re-adapting from scratch (ML-100K, 20 ratings: MAE 0.812 against 0.823) at a
    fifth of its inner steps. ``update_mode="new"`` takes them on the new ratings only,
    the cost of one inner step on the new rows, but each single rating pulls the state
    too far (0.894 on the same run, worse than no adaptation on synthetic data); see
    BENCHMARKS.md. A learner class lists it before :class:`MetaLearner` among its bases
    (``class Reptile(GradientUpdate, MetaLearner)``) and provides ``adapt_names``; the step
    count and size are the settings named by ``steps_setting`` and ``rate_setting`` (or its
    ``adaptation_rates()``).

    Args:
        update_mode: ``"history"`` or ``"new"`` (above).
        update_steps: SGD steps per update.
        history_size: ratings a state keeps for ``update_mode="history"``.
    """

    def __init__(self, model: MetaModel, update_mode: Literal["history", "new"] = "history",
                 update_steps: Annotated[int, AtLeast(1)] = 1, history_size: Annotated[int, AtLeast(1)] = 64,
                 **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())

    steps_setting = "inner_steps"
    """The setting that counts the adaptation steps."""
    rate_setting = "inner_lr"
    """The setting that holds the adaptation step size."""

    def adaptation_rates(self) -> list[dict[str, tf.Tensor]]:
        """One mapping (parameter name -> step size) per inner step (one for all of them here)."""
        rate = tf.constant(float(getattr(self, self.rate_setting)), tf.float32)
        return [{name: rate for name in self.adapt_names}]

    def update_rates(self) -> list[dict[str, tf.Tensor]]:
        return self.adaptation_rates()

    def sgd(self, part: Episode, first_order: bool = True, rate: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """The adapted parameters (and task context) after the learner's SGD steps on ``part``
        (with ``rate``, a scalar tensor, every step takes that step size instead)."""
        rates = self.adaptation_rates() if rate is None else [{name: rate for name in self.adapt_names}]
        fast, _ = inner_loop(self.model, self.model.variable_values(), self.adapt_names, part,
                             self.adaptation_steps, rates, first_order, start=self.task_start(part))
        return fast

    def task_start(self, part: Episode) -> dict[str, tf.Tensor] | None:
        """Each task's starting weights ``[T, ...]`` for the adapted parameters (None: the
        meta-parameters, the same for every task)."""
        return None

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        return self.model.forward({**self.model.variable_values(), **state}, query)

    def adapted_parameters(self) -> tuple[str, ...]:
        return tuple(self.adapt_names) if self.gradient_based else ()

    @property
    def adaptation_steps(self) -> int:
        return int(getattr(self, self.steps_setting))

    @contextlib.contextmanager
    def adaptation_steps_set(self, steps: int) -> Iterator[GradientUpdate]:
        original = self.adaptation_steps
        setattr(self, self.steps_setting, int(steps))
        try:
            yield self
        finally:
            setattr(self, self.steps_setting, original)

    def _with_history(self, state: dict[str, tf.Tensor], support: Episode) -> dict[str, tf.Tensor]:
        """``state`` plus the support's rows as its history (``update_mode="history"`` only)."""
        if self.update_mode != "history":
            return state
        rows = fit_rows({k: support[k] for k in ROW_KEYS}, self.history_size, MASK)
        return {**state, **{HISTORY + k: v for k, v in rows.items()}}

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        context = self.model.merge_task_context(state, self.model.task_context(new_support))
        start = {name: state[name] for name in self.adapt_names}
        data = new_support
        history = {}
        if self.update_mode == "history":
            old = {k: state[HISTORY + k] for k in ROW_KEYS}
            rows = append_rows(old, {k: new_support[k] for k in ROW_KEYS}, self.history_size, MASK)
            history = {HISTORY + k: v for k, v in rows.items()}
            data = rows
        fast, _ = inner_loop(self.model, self.model.variable_values(), self.adapt_names, data, self.update_steps,
                             self.update_rates(), first_order=True, start=start, context=context)
        # a task that got no new rating keeps its weights (history mode would otherwise step again)
        arrived = tf.reduce_sum(tf.cast(new_support[MASK], tf.float32), axis=-1) > 0
        for name in self.adapt_names:
            value = fast[name]
            keep = tf.reshape(arrived, tf.concat([tf.shape(arrived), tf.ones([len(value.shape) - 1], tf.int32)], 0))
            fast[name] = tf.where(keep, value, start[name])
        return {**state, **fast, **context, **history}
