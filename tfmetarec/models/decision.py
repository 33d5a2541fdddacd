"""The decision MLP that MeLU and MetaEmb put on their side-by-side inputs.

:class:`DecisionStack` is a mixin placed before :class:`~tfmetarec.models.MetaModel` among a
model's bases. The model adds its layers with ``functional.add_mlp(self, "decision", ...)`` and
has ``hidden_units``; the mixin gives :meth:`decide` and the first-layer hooks the inner loop's
low-rank form uses (:class:`~tfmetarec.learners.adaptation.LowRankKernel`).
"""

from __future__ import annotations

import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.types import Features, Params


class DecisionStack:
    """``decide``: the ``decision`` MLP (ReLU layers, a linear rating output) plus the item offset."""

    def decide(self, params: Params, representation: tf.Tensor, features: Features) -> tf.Tensor:
        return self.with_item_offset(self._decide(params, representation), features)

    def decide_sides(self, params: Params, users: tf.Tensor | None, items: tf.Tensor | None,
                     features: Features) -> tf.Tensor:
        """:meth:`decide` on the user and item sides side by side. A user row given once per task
        (``users [T, 1, du]`` for ``items [T, N, di]``, what ``reads_one_user_row`` promises) enters
        the first layer once: its half of the product is added to every item's."""
        layer = self.first_decision_layer()
        if (users is not None and items is not None and users.shape[-2] == 1 and items.shape[-2] != 1
                and layer is not None):
            (kernel, bias), width = (params[name] for name in layer), users.shape[-1]
            pre_activation = F.dense(users, kernel[..., :width, :]) + F.dense(items, kernel[..., width:, :], bias)
            return self.decide_from_first_layer(params, pre_activation, features)
        return self.decide(params, tf.concat([x for x in (users, items) if x is not None], axis=-1), features)

    def _decide(self, params: Params, x: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(F.mlp(x, params, "decision", len(self.hidden_units) + 1), axis=-1)

    def first_decision_layer(self) -> tuple[str, str] | None:
        if type(self).decide is not DecisionStack.decide or type(self)._decide is not DecisionStack._decide:
            return None  # a subclass that decides otherwise: the low-rank form would skip its change
        return "decision_0_kernel", "decision_0_bias"

    def decide_from_first_layer(self, params: Params, pre_activation: tf.Tensor, features: Features) -> tf.Tensor:
        scores = F.mlp(pre_activation, params, "decision", len(self.hidden_units) + 1, from_first_pre_activation=True)
        return self.with_item_offset(tf.squeeze(scores, axis=-1), features)
