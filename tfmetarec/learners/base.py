"""The one API every meta-learner follows.

A learner is a Keras model that owns a :class:`~tfmetarec.models.MetaModel`.

* ``adapt(support) -> state``: a dict of tensors with a leading task axis
  (adapted parameters, or a user representation).
* ``update(state, new_support) -> state``: the state after more ratings arrive,
  without replaying the ratings it already holds.
* ``score(state, query_features) -> [T, Q]`` predicted ratings.
* ``call(episode)`` = adapt on the support, then score the query.
* ``meta_gradients(episode) -> (grads, logs)`` for :meth:`meta_variables`;
  the training loop applies them with the outer optimizer (``task_gradients`` is the same
  without the learner's per-step bookkeeping, for a trainer that splits the task batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.losses import in_batch_softmax_loss, rating_objective
from tfmetarec.models.base import MetaModel
from tfmetarec.objectives import QueryLoss
from tfmetarec.options import Configurable
from tfmetarec.types import MASK, QUERY, SUPPORT, TASK_MASK, Episode, Features, features_of


class MetaLearner(Configurable, keras.Model):
    """Base class of the learners.

    A learner is configured by its constructor's keyword arguments (its *settings*, see
    :mod:`tfmetarec.options`), stored under their own names and returned by
    :meth:`get_config`. Every learner takes ``query_loss``: the
    :class:`~tfmetarec.objectives.QueryLoss` meta-training minimises on the query
    (ratings by default; a ranking mix and the in-batch retrieval term are settings of it).

    Attributes:
        gradient_based: True when ``adapt`` runs gradient steps (the exporter
            then embeds a tape-based inner loop in the served graph).
    """

    not_settings = ("model",)
    gradient_based: bool = False
    needs_training_ratings: bool = False
    """Whether :meth:`fit_training_ratings` must run before the learner answers (item statistics)."""
    task_key: str | None = None
    """The kind of task the learner needs (``"item"``: every row of a task rates one item); None: any."""

    def __init__(self, model: MetaModel, query_loss: QueryLoss | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(model, MetaModel):
            raise TypeError(f"A learner needs a tfmetarec MetaModel, got {type(model).__name__}.")
        self.model = model
        self.keep_arguments(locals())
        self.query_loss = (self.query_loss or QueryLoss()).with_retrieval_default(model.default_retrieval_weight)
        self.built = True

    # -- adaptation -------------------------------------------------------------
    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        """Adapted state for each task of a padded support batch."""
        raise NotImplementedError  # abstract

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        """Predicted ratings ``[T, Q]`` of the query rows under an adapted state."""
        raise NotImplementedError  # abstract

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        """The state after the ratings of ``new_support`` (a padded support part ``[T, S]``)
        arrive, without replaying the ratings the state already holds. A batch of padding
        only leaves the state unchanged. This default is for learners whose state does not
        depend on the ratings (no adaptation): only the model's task context advances."""
        return {**state, **self.model.merge_task_context(state, self.model.task_context(new_support))}

    def serving_state(self, state: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The state with the fixed shapes an exported signature declares (a learner whose
        state holds a memory of support rows pads or trims it to its capacity)."""
        return dict(state)

    def call(self, episode: Episode) -> tf.Tensor:
        return self.score(self.adapt(episode[SUPPORT]), features_of(episode[QUERY]))

    # -- what a learner declares about itself ---------------------------------------
    def adapted_parameters(self) -> tuple[str, ...]:
        """The model parameters ``adapt`` changes per task (none for a learner that adapts a
        representation or nothing)."""
        return ()

    @property
    def adaptation_steps(self) -> int | None:
        """Gradient steps ``adapt`` takes (None: it does not adapt by gradient steps)."""
        return None

    @contextlib.contextmanager
    def adaptation_steps_set(self, steps: int) -> Iterator[MetaLearner]:
        """Within the block, ``adapt`` takes ``steps`` gradient steps (for an inner-step curve);
        a learner that does not adapt by gradient steps refuses."""
        raise ValueError(f"{type(self).__name__} does not adapt by gradient steps; it has no inner-step curve.")
        yield self  # a generator, so the error comes at ``with``

    def fit_training_ratings(self, item_ids: np.ndarray, ratings: np.ndarray) -> None:
        """Take what the learner needs from the training ratings (encoded item IDs and their
        ratings) before training: nothing, except for the item-statistics baselines."""

    # -- meta-training ------------------------------------------------------------
    def query_objective(self, pred: tf.Tensor, query: Episode, task_mask: tf.Tensor) -> tf.Tensor:
        """The rating part of the meta-training loss of scored query rows (squared error,
        mixed with the ranking loss of :attr:`query_loss`), averaged over the real tasks."""
        return rating_objective(self.query_loss, pred, query, task_mask)

    def meta_variables(self) -> list:
        """The variables the outer optimizer updates."""
        return list(self.trainable_variables)

    def meta_loss(self, episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Query loss after adaptation, averaged over the real tasks (plus the in-batch
        retrieval term of :attr:`query_loss`, see :meth:`with_retrieval_loss`)."""
        state = self.adapt(episode[SUPPORT])
        query = episode[QUERY]
        pred = self.score(state, features_of(query))
        loss = self.query_objective(pred, query, episode[TASK_MASK])
        return self.with_retrieval_loss(loss, state, episode)

    def with_retrieval_loss(self, loss: tf.Tensor, state: dict[str, tf.Tensor],
                            episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """``loss`` plus ``query_loss.retrieval_weight`` times the in-batch softmax of the
        query items scored with ``state`` (nothing added at weight 0). Logs both terms."""
        spec = self.query_loss
        if not spec.retrieval_weight:
            return loss, {"loss": loss}
        retrieval = in_batch_softmax_loss(lambda features: self.score(state, features), episode[QUERY],
                                          episode[TASK_MASK], spec.retrieval_temperature)
        total = loss + spec.retrieval_weight * retrieval
        return total, {"loss": total, "rating_loss": loss, "retrieval_loss": retrieval}

    def meta_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """Gradients of :meth:`meta_loss` for :meth:`meta_variables` (:meth:`task_gradients`), and
        the learner's own bookkeeping of a meta-step (:meth:`after_meta_step`)."""
        grads, logs = self.task_gradients(episode)
        self.after_meta_step()
        return grads, logs

    @property
    def splits_by_task(self) -> bool:
        """Whether :meth:`task_gradients` of a batch is the mean over its real tasks of each
        task's own, so a trainer may compute it on slices of the task batch and average them
        weighted by their real tasks (``MetaTrainer(task_chunks=)``). Not with the in-batch
        retrieval term, which scores every task's user on the whole batch's query items; a
        subclass whose :meth:`meta_loss` is not a mean over real tasks must return False."""
        return not self.query_loss.retrieval_weight

    def after_meta_step(self) -> None:
        """What a learner advances once per meta-step (MAML++'s annealing step); nothing here."""

    def task_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """Gradients of :meth:`meta_loss` for :meth:`meta_variables` and the logs, a mean over the
        real tasks of ``episode``, with no side effect."""
        variables = self.meta_variables()
        with tf.GradientTape() as tape:
            loss, logs = self.meta_loss(episode)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        return grads, logs

    def get_config(self) -> dict:
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        config.update(self.settings_config())
        return config

    @classmethod
    def from_config(cls, config: dict) -> MetaLearner:
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def num_tasks(support: Episode) -> tf.Tensor:
    """Size of the task axis of a padded support batch."""
    return tf.shape(support[MASK])[0]
