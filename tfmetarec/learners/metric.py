"""Metric-based adaptation: the support set becomes prototypes or an attention memory.

No inner gradient steps: a task's support rows are embedded with the model's
``item_representation`` and a small learner-owned projection, and the query is
scored by similarity in that learned space. Both learners predict the global
model's rating (which uses the query rows' user features, the *user-feature
prior*) plus a correction from the support's residuals ``rating - prior``, so
an empty support gives exactly the prior and padding rows (mask 0) never count.

The state is a memory of the support rows (``memory_key`` ``[T, S, H]``,
``memory_value`` (the residuals) and ``memory_mask`` ``[T, S]``); everything else
is computed from it when scoring. So ``update`` only appends the new rows, and a
state updated rating by rating equals the state adapted on all of them at once
(while at most ``memory_size`` ratings are held; older ones are dropped beyond that).
"""

from __future__ import annotations

from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.maml import inverse_softplus
from tfmetarec.learners.online import append_rows, fit_rows
from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.options import Above, AtLeast
from tfmetarec.types import MASK, RATING, Episode, Features, features_of

_NEG = -1e9  # logit of a padding row (finite, so a task without rows never yields NaN)
MEMORY_KEYS = ("memory_key", "memory_value", "memory_mask")


def require_item_representation(model: MetaModel, learner: str) -> int:
    """The width of ``model.item_representation``; a clear error when the model has none."""
    if model.item_dim is None:
        raise ValueError(f"The {learner} learner cannot use model {type(model).__name__}: it scores support rows "
                         f"by their item representation, which {type(model).__name__} does not have.")
    return int(model.item_dim)


def require_user_state(model: MetaModel, learner: str) -> None:
    """A clear error when ``model`` has no user-state hooks (``user_state_dim`` None)."""
    if model.user_state_dim is None:
        raise ValueError(f"The {learner} learner cannot use model {type(model).__name__}: it needs a model with a "
                         "user state (user_representation and forward_with_user_state), which this one has not.")


def masked_residuals(model: MetaModel, params: dict, support: Episode, context: dict | None = None
                     ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(rating - prior) * mask`` ``[T, S]``, the mask and the row count ``[T]``
    (the prior is scored with the model's task context, e.g. a hybrid's support size:
    the support's own unless ``context`` is given)."""
    context = model.task_context(support) if context is None else context
    prior = model.forward({**params, **context}, features_of(support))
    mask = tf.cast(support[MASK], prior.dtype)
    residual = (tf.cast(support[RATING], prior.dtype) - prior) * mask
    return residual, mask, tf.reduce_sum(mask, axis=-1)


class _SimilarityLearner(MetaLearner):
    """Shared parts: the projection ``tanh(item_representation @ W + b)`` and an
    evidence pseudo-count ``kappa = softplus(raw)`` (learned) that shrinks the
    support's correction toward the prior when the support is small."""

    def __init__(self, model: MetaModel, hidden_dim: Annotated[int, AtLeast(1)] = 32,
                 shrinkage: Annotated[float, Above(0)] = 1.0, seed: int | None = None,
                 memory_size: Annotated[int, AtLeast(1)] = 128, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        width = require_item_representation(model, type(self).__name__)
        self.proj_kernel = self.add_weight(
            shape=(width, self.hidden_dim),
            initializer=keras.initializers.GlorotUniform(seed=seed),
            name="proj_kernel",
        )
        self.proj_bias = self.add_weight(shape=(self.hidden_dim,), initializer="zeros", name="proj_bias")
        self.raw_shrinkage = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(inverse_softplus(self.shrinkage)), name="raw_shrinkage"
        )

    def embed(self, params: dict, features: Features) -> tf.Tensor:
        items = self.model.item_representation(params, features)
        return F.dense(items, self.proj_kernel.value, self.proj_bias.value, "tanh")

    def kappa(self) -> tf.Tensor:
        return tf.nn.softplus(self.raw_shrinkage)

    def key(self, params: dict, features: Features) -> tf.Tensor:
        """What a support row is remembered by (and a query row compared with)."""
        return self.embed(params, features)

    def memory(self, support: Episode, context: dict | None = None) -> dict[str, tf.Tensor]:
        """The support's rows as a memory: held rows first, in order, padding zeroed."""
        params = self.model.variable_values()
        residual, mask, _ = masked_residuals(self.model, params, support, context)
        rows = {"memory_key": self.key(params, features_of(support)), "memory_value": residual, "memory_mask": mask}
        return fit_rows(rows, tf.shape(mask)[1], "memory_mask")

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        return {**self.memory(support), **self.model.task_context(support)}

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        context = self.model.merge_task_context(state, self.model.task_context(new_support))
        old = {k: state[k] for k in MEMORY_KEYS}
        rows = append_rows(old, self.memory(new_support, context), self.memory_size, "memory_mask")
        return {**state, **rows, **context}

    def serving_state(self, state: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = fit_rows({k: state[k] for k in MEMORY_KEYS}, self.memory_size, "memory_mask")
        return {**state, **rows}


@keras.saving.register_keras_serializable(package="tfmetarec")
class PrototypeLearner(_SimilarityLearner):
    """Prototypes of the liked and the disliked support items (prototypical networks).

    A support row's residual, centred on the task's mean residual, weighs its
    projected item into the *liked* (positive) or *disliked* (negative)
    prototype; both are shrunk toward a learned prior prototype by ``kappa``
    pseudo-rows. A query item scores
    ``prior + offset + scale * (|z - p_disliked|^2 - |z - p_liked|^2)``, where
    ``offset`` is the task's mean residual shrunk by ``kappa`` and ``scale`` a
    learned positive scalar.
    """

    def __init__(self, model: MetaModel, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.prior_prototype = self.add_weight(shape=(self.hidden_dim,), initializer="zeros", name="prior_prototype")
        self.raw_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(inverse_softplus(0.5)), name="raw_scale"
        )

    def prototypes(self, state: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The liked and disliked prototypes ``[T, H]`` and the offset ``[T]`` of a memory."""
        z, residual, mask = state["memory_key"], state["memory_value"], state["memory_mask"]
        kappa = tf.cast(self.kappa(), residual.dtype)
        total = tf.reduce_sum(residual, axis=-1)
        count = tf.reduce_sum(mask, axis=-1)
        centred = (residual - (total / tf.maximum(count, 1.0))[:, None]) * mask
        prior = tf.cast(self.prior_prototype, z.dtype)

        def prototype(weight: tf.Tensor) -> tf.Tensor:
            summed = tf.einsum("ts,tsh->th", weight, z) + kappa * prior
            return summed / (tf.reduce_sum(weight, axis=-1, keepdims=True) + kappa)

        return prototype(tf.nn.relu(centred)), prototype(tf.nn.relu(-centred)), total / (count + kappa)

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        params = self.model.with_task_context(self.model.variable_values(), state)
        prior = self.model.forward(params, query)
        liked, disliked, offset = self.prototypes(state)
        z = self.embed(params, query)  # [T, Q, H]
        to_liked = tf.reduce_sum(tf.square(z - liked[:, None, :]), axis=-1)
        to_disliked = tf.reduce_sum(tf.square(z - disliked[:, None, :]), axis=-1)
        scale = tf.cast(tf.nn.softplus(self.raw_scale), prior.dtype)
        return prior + offset[:, None] + scale * (to_disliked - to_liked)


@keras.saving.register_keras_serializable(package="tfmetarec")
class MatchingLearner(_SimilarityLearner):
    """Attention over the support items (matching networks).

    Each query item attends to the task's support items by cosine similarity
    of their projections (times a learned temperature), masked to real rows.
    The prediction is ``prior + gate * sum_k a_k * residual_k`` with the gate
    ``n / (n + kappa)`` growing with the support size ``n``: the attention-
    weighted support ratings act as a correction of the model's prior.
    """

    def __init__(self, model: MetaModel, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.raw_temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(inverse_softplus(5.0)), name="raw_temperature"
        )

    def key(self, params: dict, features: Features) -> tf.Tensor:
        return tf.math.l2_normalize(self.embed(params, features), axis=-1, epsilon=1e-6)

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        params = self.model.with_task_context(self.model.variable_values(), state)
        prior = self.model.forward(params, query)
        mask = state["memory_mask"][:, None, :]  # [T, 1, S]
        temperature = tf.cast(tf.nn.softplus(self.raw_temperature), prior.dtype)
        logits = temperature * tf.einsum("tqh,tsh->tqs", self.key(params, query), state["memory_key"])
        logits = tf.where(mask > 0, logits, tf.constant(_NEG, logits.dtype))
        attention = tf.nn.softmax(logits, axis=-1) * mask  # all-zero for an empty support
        recalled = tf.einsum("tqs,ts->tq", attention, state["memory_value"])
        count = tf.reduce_sum(state["memory_mask"], axis=-1)
        gate = count / (count + tf.cast(self.kappa(), count.dtype))
        return prior + gate[:, None] * recalled
