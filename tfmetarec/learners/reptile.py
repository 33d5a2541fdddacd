"""Reptile (Nichol et al., 2018): meta-learn by moving toward task-adapted weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.learners.adaptation import GradientUpdate
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.base import MetaModel
from tfmetarec.options import AtLeast
from tfmetarec.types import QUERY, SUPPORT, TASK_MASK, Episode, features_of


def concat_parts(first: Episode, second: Episode) -> dict[str, tf.Tensor]:
    """Support and query rows of each task side by side: ``[T, S + Q, ...]``."""
    return {k: tf.concat([first[k], second[k]], axis=1) for k in first if k in second}


@keras.saving.register_keras_serializable(package="tfmetarec")
class Reptile(GradientUpdate, MetaLearner):
    """Reptile on the adapted parameters, first-order query gradients on the shared ones.

    Meta-training runs ``inner_steps`` of SGD on each task (on its support and
    query rows together with ``train_on_query``, else on the support only), all
    tasks at once, giving adapted weights ``phi_t``. For every adapted
    parameter the pseudo-gradient handed to the outer optimizer is
    ``theta - mean_t phi_t`` (mean over the real tasks), so plain SGD with
    learning rate ``eps`` performs exactly ``theta <- theta + eps (mean phi - theta)``;
    Adam rescales that direction per element. Parameters outside ``adapt``
    would get a zero Reptile update; they receive instead the gradient of the
    query loss at the (fixed) adapted weights, so shared embeddings still learn
    (plus the model's in-batch retrieval term when it has a ``retrieval_weight``).

    At test time ``adapt`` runs the same SGD on the support only.
    """

    gradient_based = True

    def __init__(
        self,
        model: MetaModel,
        inner_steps: Annotated[int, AtLeast(1)] = 5,
        inner_lr: Annotated[float, AtLeast(0)] = 0.05,
        adapt: str | Sequence[str] = "decision",
        train_on_query: bool = True,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        self.adapt_names = model.resolve_params(self.setting("adapt"))

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        return self._with_history(self.sgd(support), support)

    def meta_variables(self) -> list:
        return list(self.model.parameters().values())

    def task_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        support, query = episode[SUPPORT], episode[QUERY]
        data = concat_parts(support, query) if self.train_on_query else support
        fast = {n: tf.stop_gradient(v) for n, v in self.sgd(data).items()}
        params = self.model.parameters()
        shared = [n for n in params if n not in fast]
        with tf.GradientTape() as tape:
            pred = self.score(fast, features_of(query))
            loss = self.query_objective(pred, query, episode[TASK_MASK])
            total, logs = self.with_retrieval_loss(loss, fast, episode)
        shared_grads = dict(zip(shared, tape.gradient(total, [params[n] for n in shared])))
        grads = []
        for name, var in params.items():
            if name in fast:
                value = fast[name]
                weights = tf.cast(episode[TASK_MASK], value.dtype)
                weights = weights / tf.maximum(tf.reduce_sum(weights), 1.0)
                step = tf.tensordot(weights, value - tf.convert_to_tensor(var)[None], axes=1)
                grads.append(-step)  # theta - mean phi (zero when the batch has no real task)
            else:
                g = shared_grads[name]
                grads.append(tf.zeros_like(var) if g is None else tf.convert_to_tensor(g))
        return grads, logs
