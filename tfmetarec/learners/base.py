"""The one API every meta-learner follows.

A learner is a Keras model that owns a :class:`~tfmetarec.models.MetaModel`.

* ``adapt(support) -> state``: a dict of tensors with a leading task axis
  (adapted parameters, or a user representation).
* ``update(state, new_support) -> state``: the state after more ratings arrive,
  without replaying the ratings it already holds.
* ``score(state, query_features) -> [T, Q]`` predicted ratings.
* ``call(episode)`` = adapt on the support, then score the query.
* ``meta_gradients(episode) -> (grads, logs)`` for :meth:`meta_variables`;
  the training loop applies them with the outer optimizer.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfmetarec.learners.losses import RANKING_LOSSES, in_batch_softmax_loss, mean_over_tasks, task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, TASK_MASK, Episode, Features, features_of


class MetaLearner(keras.Model):
    """Base class of the learners.

    Attributes:
        gradient_based: True when ``adapt`` runs gradient steps (the exporter
            then embeds a tape-based inner loop in the served graph).
    """

    gradient_based: bool = False
    ranking_weight: float = 0.0
    ranking_loss: str = "pairwise"

    def __init__(self, model: MetaModel, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, MetaModel):
            raise TypeError(f"A learner needs a tfmetarec MetaModel, got {type(model).__name__}.")
        self.model = model
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

    # -- meta-training ------------------------------------------------------------
    def set_query_loss(self, ranking_weight: float = 0.0, ranking_loss: str = "pairwise") -> MetaLearner:
        """Meta-train on ``(1 - ranking_weight) * MSE + ranking_weight * ranking`` of the query
        (``ranking_loss``: ``pairwise`` or ``listwise``, see :data:`RANKING_LOSSES`); 0 keeps the
        rating loss alone. Adaptation (the inner loop) is unchanged. Returns ``self``."""
        weight = float(ranking_weight)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"ranking_weight must lie in [0, 1], got {ranking_weight}.")
        if ranking_loss not in RANKING_LOSSES:
            raise ValueError(f"ranking_loss must be one of {sorted(RANKING_LOSSES)}, got {ranking_loss!r}.")
        self.ranking_weight, self.ranking_loss = weight, ranking_loss
        return self

    def query_loss(self, pred: tf.Tensor, query: Episode, task_mask: tf.Tensor) -> tf.Tensor:
        """The meta-training loss of scored query rows, averaged over the real tasks: the
        squared error, mixed with the ranking loss set by :meth:`set_query_loss`."""
        loss = mean_over_tasks(task_mse(pred, query[RATING], query[MASK]), task_mask)
        if self.ranking_weight <= 0:
            return loss
        ranking = mean_over_tasks(RANKING_LOSSES[self.ranking_loss](pred, query[RATING], query[MASK]), task_mask)
        return (1.0 - self.ranking_weight) * loss + self.ranking_weight * ranking

    def meta_variables(self) -> list:
        """The variables the outer optimizer updates."""
        return list(self.trainable_variables)

    def meta_loss(self, episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Query loss after adaptation, averaged over the real tasks (plus the
        model's retrieval term, see :meth:`with_retrieval_loss`)."""
        state = self.adapt(episode[SUPPORT])
        query = episode[QUERY]
        pred = self.score(state, features_of(query))
        loss = self.query_loss(pred, query, episode[TASK_MASK])
        return self.with_retrieval_loss(loss, state, episode)

    def with_retrieval_loss(self, loss: tf.Tensor, state: dict[str, tf.Tensor],
                            episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """``loss`` plus ``model.retrieval_weight`` times the in-batch softmax of the
        query items scored with ``state`` (models without a ``retrieval_weight``, or
        with 0, add nothing). Logs both terms."""
        weight = float(getattr(self.model, "retrieval_weight", 0.0))
        if weight <= 0:
            return loss, {"loss": loss}
        retrieval = in_batch_softmax_loss(lambda features: self.score(state, features), episode[QUERY],
                                          episode[TASK_MASK], self.model.retrieval_temperature)
        total = loss + weight * retrieval
        return total, {"loss": total, "rating_loss": loss, "retrieval_loss": retrieval}

    def meta_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """Gradients of :meth:`meta_loss` for :meth:`meta_variables`."""
        variables = self.meta_variables()
        with tf.GradientTape() as tape:
            loss, logs = self.meta_loss(episode)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        return grads, logs

    def get_config(self) -> dict:
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        if self.ranking_weight > 0:
            config.update(ranking_weight=self.ranking_weight, ranking_loss=self.ranking_loss)
        return config

    @classmethod
    def from_config(cls, config: dict) -> MetaLearner:
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        ranking = (config.pop("ranking_weight", 0.0), config.pop("ranking_loss", "pairwise"))
        return cls(**config).set_query_loss(*ranking)


def num_tasks(support: Episode) -> tf.Tensor:
    """Size of the task axis of a padded support batch."""
    return tf.shape(support[MASK])[0]
