"""Model-agnostic meta-learning (Finn et al., 2017) for rating models, with the
Meta-SGD (Li et al., 2017) and MAML++ (Antoniou et al., 2019) extensions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import keras
import tensorflow as tf

from tfmetarec.learners.adaptation import GradientUpdate, inner_steps
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.base import MetaModel
from tfmetarec.options import AtLeast
from tfmetarec.types import QUERY, SUPPORT, TASK_MASK, Episode, features_of

def inverse_softplus(value: float) -> float:
    """The ``x`` with ``softplus(x) == value`` (``value > 0``)."""
    return value + math.log(-math.expm1(-value))


@keras.saving.register_keras_serializable(package="tfmetarec")
class MAML(GradientUpdate, MetaLearner):
    """MAML with second-order meta-gradients through nested ``GradientTape``.

    ``fomaml`` and ``meta_sgd`` are this class with ``first_order=True`` and
    ``learn_inner_lr="per_parameter"`` (named option sets of :mod:`tfmetarec.registry`).

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
        **kwargs: ``query_loss`` (:class:`~tfmetarec.objectives.QueryLoss`) and Keras' arguments.
    """

    gradient_based = True

    def __init__(
        self,
        model: MetaModel,
        inner_steps: Annotated[int, AtLeast(0)] = 5,
        inner_lr: Annotated[float, AtLeast(0)] = 0.05,
        first_order: bool = False,
        adapt: str | Sequence[str] = "decision",
        learn_inner_lr: Literal["fixed", "per_parameter", "per_layer_step"] = "fixed",
        multi_step_loss: bool = False,
        msl_anneal_steps: Annotated[int, AtLeast(0)] = 0,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        if learn_inner_lr != "fixed" and inner_lr <= 0:
            raise ValueError(f"Learned inner rates start at inner_lr, which must be > 0; got {inner_lr}.")
        self.adapt_names = model.resolve_params(self.setting("adapt"))
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

    def adaptation_rates(self) -> list[dict[str, tf.Tensor]]:
        """One mapping (name -> rate) per inner step (a single one when shared by all steps)."""
        if self.learn_inner_lr == "fixed":
            rate = tf.constant(self.inner_lr, tf.float32)
            return [{name: rate for name in self.adapt_names}]
        rates = {name: tf.nn.softplus(raw) for name, raw in zip(self.adapt_names, self._raw_rates)}
        if self.learn_inner_lr == "per_parameter":
            return [rates]
        return [{name: rate[step] for name, rate in rates.items()} for step in range(max(self.inner_steps, 1))]

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        return self._with_history(self.sgd(support, self.first_order), support)

    def trajectory(self, support: Episode) -> list[dict[str, tf.Tensor]]:
        """The adapted parameters after each inner step (``[T, ...]`` each); the
        first entry is the starting weights (:meth:`task_start`; no step taken)."""
        return [state for state, _ in inner_steps(self.model, self.model.variable_values(), self.adapt_names,
                                                  support, self.inner_steps, self.adaptation_rates(),
                                                  self.first_order, start=self.task_start(support))]

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
            losses.append(self.query_objective(pred, query, episode[TASK_MASK]))
        stacked = tf.stack(losses)
        loss = tf.reduce_sum(tf.cast(weights, stacked.dtype) * stacked)
        loss, logs = self.with_retrieval_loss(loss, states[-1], episode)
        return loss, {**logs, "query_loss": losses[-1]}

    def after_meta_step(self) -> None:
        """Advance the multi-step loss's annealing step."""
        if self.msl_step is not None:
            self.msl_step.assign_add(tf.ones_like(self.msl_step))

