"""Model-agnostic meta-learning (Finn et al., 2017) for rating models."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfmetarec.learners.adaptation import inner_loop
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.base import MetaModel
from tfmetarec.types import Episode, Features


@keras.saving.register_keras_serializable(package="tfmetarec")
class MAML(MetaLearner):
    """MAML with second-order meta-gradients through nested ``GradientTape``.

    Args:
        model: the rating model whose parameters are meta-learned.
        inner_steps: SGD steps on each task's support set.
        inner_lr: the inner learning rate.
        first_order: drop the second-order terms (FOMAML).
        adapt: which parameters adapt per task: a group name of the model
            (``"all"``, ``"decision"`` as in MeLU, ``"head"`` as in ANIL) or a
            list of parameter names. The others are shared by all tasks.
    """

    gradient_based = True

    def __init__(
        self,
        model: MetaModel,
        inner_steps: int = 5,
        inner_lr: float = 0.05,
        first_order: bool = False,
        adapt: str | Sequence[str] = "decision",
        **kwargs,
    ):
        super().__init__(model, **kwargs)
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {inner_steps}.")
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.first_order = bool(first_order)
        self.adapt_spec = adapt if isinstance(adapt, str) else list(adapt)
        self.adapt_names = model.resolve_params(adapt)

    def inner_learning_rates(self) -> list[dict[str, tf.Tensor]]:
        """One mapping (name -> rate) per inner step."""
        rate = tf.constant(self.inner_lr, tf.float32)
        return [{name: rate for name in self.adapt_names}]

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
        return fast

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        return self.model.forward({**self.model.variable_values(), **state}, query)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            first_order=self.first_order,
            adapt=self.adapt_spec,
        )
        return config
