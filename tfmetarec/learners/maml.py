"""Model-agnostic meta-learning (Finn et al., 2017) for rating models, with the
Meta-SGD (Li et al., 2017) and MAML++ (Antoniou et al., 2019) extensions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmetarec.learners.adaptation import GradientUpdate, inner_loop, tile_for_tasks
from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.losses import task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, TASK_MASK, Episode, Features, features_of

INNER_LR_MODES = ("fixed", "per_parameter", "per_layer_step")


def inverse_softplus(value: float) -> float:
    """The ``x`` with ``softplus(x) == value`` (``value > 0``)."""
    return value + math.log(-math.expm1(-value))


@keras.saving.register_keras_serializable(package="tfmetarec")
class MAML(GradientUpdate, MetaLearner):
    """MAML with second-order meta-gradients through nested ``GradientTape``.

    Args:
        model: the rating model whose parameters are meta-learned.
        inner_steps: SGD steps on each task's support set.
        inner_lr: the inner learning rate (the initial value when learned).
        first_order: drop the second-order terms (FOMAML).
        adapt: which parameters adapt per task: a group name of the model
            (``"all"``, ``"decision"`` as in MeLU, ``"head"`` as in ANIL) or a
            list of parameter names. The others are shared by all tasks.
        learn_inner_lr: ``"fixed"`` (plain MAML); ``"per_parameter"`` (Meta-SGD:
            one learned rate per element of every adapted parameter, shared by
            all steps); ``"per_layer_step"`` (MAML++ LSLR: one learned scalar per
            adapted parameter tensor and inner step). Learned rates are learner
            variables updated by the outer optimizer; the rate used is
            ``softplus(raw)``, so it stays positive, and starts at ``inner_lr``.
        multi_step_loss: MAML++ MSL: the meta-loss is a weighted sum of the
            query losses after every inner step instead of after the last one.
        msl_anneal_steps: with MSL, the weights start uniform and move linearly
            to all weight on the last step over this many outer steps (counted
            by a non-trainable learner variable); 0 keeps them uniform.
        update_mode, update_steps, history_size: how ``update`` advances an adapted
            state as ratings arrive (see :class:`~tfmetarec.learners.adaptation.GradientUpdate`):
            by default one SGD step on the last 64 ratings, which the state keeps.
    """

    gradient_based = True

    def __init__(
        self,
        model: MetaModel,
        inner_steps: int = 5,
        inner_lr: float = 0.05,
        first_order: bool = False,
        adapt: str | Sequence[str] = "decision",
        learn_inner_lr: str = "fixed",
        multi_step_loss: bool = False,
        msl_anneal_steps: int = 0,
        update_mode: str = "history",
        update_steps: int = 1,
        history_size: int = 64,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self._init_update(update_mode, update_steps, history_size)
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {inner_steps}.")
        if learn_inner_lr not in INNER_LR_MODES:
            raise ValueError(f"learn_inner_lr must be one of {INNER_LR_MODES}, got {learn_inner_lr!r}.")
        if learn_inner_lr != "fixed" and inner_lr <= 0:
            raise ValueError(f"Learned inner rates start at inner_lr, which must be > 0; got {inner_lr}.")
        if msl_anneal_steps < 0:
            raise ValueError(f"msl_anneal_steps must be >= 0, got {msl_anneal_steps}.")
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.first_order = bool(first_order)
        self.adapt_spec = adapt if isinstance(adapt, str) else list(adapt)
        self.adapt_names = model.resolve_params(adapt)
        self.learn_inner_lr = learn_inner_lr
        self.multi_step_loss = bool(multi_step_loss)
        self.msl_anneal_steps = int(msl_anneal_steps)
        self._raw_rates: list[keras.Variable] = []
        if learn_inner_lr != "fixed":
            params = model.parameters()
            start = keras.initializers.Constant(inverse_softplus(self.inner_lr))
            for name in self.adapt_names:
                shape = tuple(params[name].shape) if learn_inner_lr == "per_parameter" else (max(self.inner_steps, 1),)
                self._raw_rates.append(self.add_weight(shape=shape, initializer=start, name=f"inner_lr_{name}"))
        self.msl_step = None
        if self.multi_step_loss:
            self.msl_step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="msl_step")

    def inner_learning_rates(self) -> list[dict[str, tf.Tensor]]:
        """One mapping (name -> rate) per inner step (a single one when shared by all steps)."""
        if self.learn_inner_lr == "fixed":
            rate = tf.constant(self.inner_lr, tf.float32)
            return [{name: rate for name in self.adapt_names}]
        rates = {name: tf.nn.softplus(raw) for name, raw in zip(self.adapt_names, self._raw_rates)}
        if self.learn_inner_lr == "per_parameter":
            return [rates]
        return [{name: rate[step] for name, rate in rates.items()} for step in range(max(self.inner_steps, 1))]

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        fast, _ = inner_loop(
            self.model,
            self.model.variable_values(),
            self.adapt_names,
            support,
            self.inner_steps,
            self.inner_learning_rates(),
            self.first_order,
        )
        return self._with_history(fast, support)

    def update_rates(self) -> list[dict[str, tf.Tensor]]:
        return self.inner_learning_rates()

    def trajectory(self, support: Episode) -> list[dict[str, tf.Tensor]]:
        """The adapted parameters after each inner step (``[T, ...]`` each); the
        first entry is the meta-parameters tiled per task (no step taken)."""
        params = self.model.variable_values()
        features = features_of(support)
        tasks = tf.shape(support[MASK])[0]
        context = self.model.task_context(support)
        params = {**params, **context}
        fast = {name: tile_for_tasks(params[name], tasks) for name in self.adapt_names}
        rates_per_step = self.inner_learning_rates()
        states = [{**fast, **context}]
        for step in range(self.inner_steps):
            rates = rates_per_step[min(step, len(rates_per_step) - 1)]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(list(fast.values()))
                pred = self.model.forward({**params, **fast}, features)
                total = tf.reduce_sum(task_mse(pred, support[RATING], support[MASK]))
            grads = tape.gradient(total, fast)
            new_fast = {}
            for name, value in fast.items():
                grad = tf.zeros_like(value) if grads[name] is None else grads[name]
                if self.first_order:
                    grad = tf.stop_gradient(grad)
                new_fast[name] = value - tf.cast(rates[name], value.dtype) * grad
            fast = new_fast
            states.append({**fast, **context})
        return states

    def msl_weights(self) -> tf.Tensor:
        """Weights ``[inner_steps]`` of the query losses after each inner step (sum 1)."""
        k = self.inner_steps
        dtype = self.msl_step.dtype
        uniform = tf.fill([k], tf.constant(1.0 / k, dtype))
        last = tf.one_hot(k - 1, k, dtype=dtype)
        if self.msl_anneal_steps == 0:
            return uniform
        progress = tf.minimum(self.msl_step / float(self.msl_anneal_steps), 1.0)
        return (1.0 - progress) * uniform + progress * last

    def meta_loss(self, episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        if not self.multi_step_loss or self.inner_steps == 0:
            return super().meta_loss(episode)
        query = episode[QUERY]
        features = features_of(query)
        weights = self.msl_weights()
        losses = []
        states = self.trajectory(episode[SUPPORT])[1:]
        for fast in states:
            pred = self.score(fast, features)
            losses.append(self.query_loss(pred, query, episode[TASK_MASK]))
        stacked = tf.stack(losses)
        loss = tf.reduce_sum(tf.cast(weights, stacked.dtype) * stacked)
        loss, logs = self.with_retrieval_loss(loss, states[-1], episode)
        return loss, {**logs, "query_loss": losses[-1]}

    def meta_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        grads, logs = super().meta_gradients(episode)
        if self.msl_step is not None:
            self.msl_step.assign_add(tf.ones_like(self.msl_step))
        return grads, logs

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        return self.model.forward({**self.model.variable_values(), **state}, query)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            first_order=self.first_order,
            adapt=self.adapt_spec,
            learn_inner_lr=self.learn_inner_lr,
            multi_step_loss=self.multi_step_loss,
            msl_anneal_steps=self.msl_anneal_steps,
            **self.update_config(),
        )
        return config


@keras.saving.register_keras_serializable(package="tfmetarec")
class FOMAML(MAML):
    """First-order MAML: :class:`MAML` with ``first_order=True`` by default."""

    def __init__(self, model: MetaModel, **kwargs: Any):
        kwargs.setdefault("first_order", True)
        super().__init__(model, **kwargs)


@keras.saving.register_keras_serializable(package="tfmetarec")
class MetaSGD(MAML):
    """Meta-SGD: :class:`MAML` with learned per-parameter inner rates by default."""

    def __init__(self, model: MetaModel, **kwargs: Any):
        kwargs.setdefault("learn_inner_lr", "per_parameter")
        super().__init__(model, **kwargs)
