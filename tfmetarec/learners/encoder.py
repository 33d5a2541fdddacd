"""Model-based (amortised) adaptation: a set encoder maps the support to a user state."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import keras
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.maml import inverse_softplus
from tfmetarec.learners.metric import _NEG, masked_residuals, require_item_representation, require_user_state
from tfmetarec.models.base import MetaModel
from tfmetarec.options import Above, AtLeast
from tfmetarec.types import RATING, Episode, Features, features_of

@keras.saving.register_keras_serializable(package="tfmetarec")
class TaskEncoder(MetaLearner):
    """One forward pass from a support set to a user state, as in neural processes.

    Each support row becomes ``x = [item_representation, rating - prior, rating / 5]``
    (``prior`` is the global model's prediction), goes through a two-layer
    ReLU network, and the rows are pooled over the real rows only (masked
    mean, or attention pooling with a learned query vector). A linear read-out
    of the pooled vector and ``log(1 + n)`` gives ``delta``, scaled by the gate
    ``n / (n + kappa)`` (learned ``kappa > 0``). The user state is
    ``user_representation(query user features) + delta`` and the query is
    scored with ``forward_with_user_state``; with an empty support ``delta`` is
    exactly 0 and the learner is the global model. Every row of a task belongs
    to one user, so the prior is read from the first query row.
    """

    gradient_based = False

    def __init__(
        self,
        model: MetaModel,
        hidden_dim: Annotated[int, AtLeast(1)] = 32,
        pooling: Literal["mean", "attention"] = "attention",
        shrinkage: Annotated[float, Above(0)] = 1.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        item_width = require_item_representation(model, "TaskEncoder")
        require_user_state(model, "TaskEncoder")
        h = self.hidden_dim

        def init(i: int, scale: float = 1.0) -> keras.initializers.Initializer:
            s = None if seed is None else seed + i
            return keras.initializers.VarianceScaling(scale, "fan_avg", "uniform", seed=s)

        self.row_kernel = self.add_weight(shape=(item_width + 2, h), initializer=init(0), name="row_kernel")
        self.row_bias = self.add_weight(shape=(h,), initializer="zeros", name="row_bias")
        self.row2_kernel = self.add_weight(shape=(h, h), initializer=init(1), name="row2_kernel")
        self.row2_bias = self.add_weight(shape=(h,), initializer="zeros", name="row2_bias")
        # a small read-out, so training starts close to the global model
        self.out_kernel = self.add_weight(
            shape=(h + 2, model.user_state_dim), initializer=init(2, 0.1), name="out_kernel"
        )
        self.out_bias = self.add_weight(shape=(model.user_state_dim,), initializer="zeros", name="out_bias")
        # the offset starts as the support's mean residual (a user bias), refined by training
        self.offset_kernel = self.add_weight(
            shape=(h + 2,), initializer=keras.initializers.Constant([0.0] * (h + 1) + [1.0]), name="offset_kernel"
        )
        self.offset_bias = self.add_weight(shape=(), initializer="zeros", name="offset_bias")
        self.raw_shrinkage = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(inverse_softplus(self.shrinkage)), name="raw_shrinkage"
        )
        self.attention_query = None
        if pooling == "attention":
            self.attention_query = self.add_weight(shape=(h,), initializer=init(3), name="attention_query")

    # The state holds sums over the support rows, so rows can arrive one at a time: with
    # mean pooling the sum of the hidden rows; with attention pooling a log-sum-exp
    # accumulator (the largest logit, the sum of exp(logit - largest), and the hidden rows
    # summed with those weights), which merges exactly.
    def _stats(self, support: Episode, context: dict | None = None) -> dict[str, tf.Tensor]:
        params = self.model.variable_values()
        residual, mask, count = masked_residuals(self.model, params, support, context)
        items = self.model.item_representation(params, features_of(support))
        rating = tf.cast(support[RATING], residual.dtype) * mask / 5.0
        x = tf.concat([items, residual[..., None], rating[..., None]], axis=-1)
        hidden = tf.nn.relu(tf.einsum("tsd,dh->tsh", x, self.row_kernel) + self.row_bias)
        hidden = tf.nn.relu(tf.einsum("tsh,hk->tsk", hidden, self.row2_kernel) + self.row2_bias)
        stats = {"count": count, "residual_sum": tf.reduce_sum(residual, axis=-1)}
        if self.pooling == "attention":
            logits = tf.where(mask > 0, tf.einsum("tsh,h->ts", hidden, self.attention_query),
                              tf.constant(_NEG, residual.dtype))
            top = tf.reduce_max(logits, axis=-1)
            weights = tf.exp(logits - top[:, None]) * mask
            stats.update(pool_max=top, pool_norm=tf.reduce_sum(weights, axis=-1),
                         pool_sum=tf.einsum("ts,tsh->th", weights, hidden))
        else:
            stats["pool_sum"] = tf.einsum("ts,tsh->th", mask, hidden)
        return stats

    def _merge(self, a: dict[str, tf.Tensor], b: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {"count": a["count"] + b["count"], "residual_sum": a["residual_sum"] + b["residual_sum"]}
        if self.pooling == "attention":
            top = tf.maximum(a["pool_max"], b["pool_max"])
            wa, wb = tf.exp(a["pool_max"] - top), tf.exp(b["pool_max"] - top)
            out.update(pool_max=top, pool_norm=wa * a["pool_norm"] + wb * b["pool_norm"],
                       pool_sum=wa[:, None] * a["pool_sum"] + wb[:, None] * b["pool_sum"])
        else:
            out["pool_sum"] = a["pool_sum"] + b["pool_sum"]
        return out

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        return {**self._stats(support), **self.model.task_context(support)}

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        context = self.model.merge_task_context(state, self.model.task_context(new_support))
        return {**state, **self._merge(state, self._stats(new_support, context)), **context}

    def user_delta(self, state: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """``(delta [T, D], offset [T])`` from the pooled support."""
        count = state["count"]
        if self.pooling == "attention":
            pooled = state["pool_sum"] / tf.maximum(state["pool_norm"], 1e-30)[:, None]
        else:
            pooled = state["pool_sum"] / tf.maximum(count, 1.0)[:, None]
        mean_residual = state["residual_sum"] / tf.maximum(count, 1.0)
        summary = tf.concat([pooled, tf.math.log1p(count)[:, None], mean_residual[:, None]], axis=-1)
        gate = count / (count + tf.cast(tf.nn.softplus(self.raw_shrinkage), count.dtype))
        delta = gate[:, None] * (tf.matmul(summary, self.out_kernel) + self.out_bias)
        offset = gate * (tf.linalg.matvec(summary, self.offset_kernel) + self.offset_bias)
        return delta, offset

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        params = self.model.with_task_context(self.model.variable_values(), state)
        delta, offset = self.user_delta(state)
        users = self.model.user_representation(params, query)  # [T, Q, D], one user per task
        prior = tf.reduce_sum(users[:, :1, :], axis=1)  # first row; zeros if the query has no rows
        return self.model.forward_with_user_state(params, prior + delta, query) + offset[:, None]
