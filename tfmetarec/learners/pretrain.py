"""Baselines without meta-learning: a global model, optionally fine-tuned per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.learners.adaptation import GradientUpdate
from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.losses import mean_over_tasks, task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.options import AtLeast
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, TASK_MASK, Episode, features_of


@keras.saving.register_keras_serializable(package="tfmetarec")
class Pretrain(GradientUpdate, MetaLearner):
    """Train the model globally on every rating; adapt by plain SGD fine-tuning.

    Training minimises the squared error over the support and query rows of
    each batch, with no inner loop. With ``finetune_steps=0`` it is the
    no-adaptation baseline; with ``k`` steps it is pretrain-then-fine-tune,
    which runs the same inner SGD as MAML from non-meta-learned weights.
    """

    steps_setting = "finetune_steps"
    rate_setting = "finetune_lr"

    def __init__(
        self,
        model: MetaModel,
        finetune_steps: Annotated[int, AtLeast(0)] = 0,
        finetune_lr: Annotated[float, AtLeast(0)] = 0.05,
        adapt: str | Sequence[str] = "decision",
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        self.adapt_names = model.resolve_params(self.setting("adapt"))

    @property
    def gradient_based(self) -> bool:  # type: ignore[override]
        return self.finetune_steps > 0

    def with_finetuning(self, steps: int, lr: float | None = None) -> Pretrain:
        """A learner sharing this one's model that fine-tunes for ``steps``."""
        return Pretrain(self.model, steps, self.finetune_lr if lr is None else lr, self.setting("adapt"),
                        update_mode=self.update_mode, update_steps=self.update_steps,
                        history_size=self.history_size, query_loss=self.query_loss)

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        if self.finetune_steps == 0:
            return self.model.task_context(support)
        return self._with_history(self.sgd(support), support)

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        if self.finetune_steps == 0:  # no adaptation: the state is the task context only
            return MetaLearner.update(self, state, new_support)
        return GradientUpdate.update(self, state, new_support)


    def meta_loss(self, episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        losses = []
        for part in (episode[SUPPORT], episode[QUERY]):
            pred = self.model.forward(self.model.variable_values(), features_of(part))
            losses.append(mean_over_tasks(task_mse(pred, part[RATING], part[MASK]), episode[TASK_MASK]))
        loss = 0.5 * (losses[0] + losses[1])
        return self.with_retrieval_loss(loss, {}, episode)
