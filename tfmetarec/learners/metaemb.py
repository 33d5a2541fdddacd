"""Meta-Embedding's two-phase objective (Pan et al., SIGIR 2019) as a learner on item tasks.

A task is one item (``task_key="item"``): its support holds a first batch ``a`` of the
item's ratings (the *cold* phase), its query a second batch ``b`` (the *warm* phase).
The item's ID embedding is generated from its content, ``phi = generator(content)``;
the cold-phase loss ``l_a`` scores ``a`` with ``phi``; one gradient step on the
embedding, ``phi' = phi - warm_lr * dl_a/dphi``, gives the warm-phase loss ``l_b`` on
``b``. Meta-training minimises ``cold_weight * l_a + (1 - cold_weight) * l_b`` over the
generator's weights only, so the base model (trained first, by any learner) is untouched.

At test time ``adapt`` generates the new item's embedding and takes the warm-up step on
its first ratings; ``score`` rates the query with it. Training runs through the one
:class:`~tfmetarec.learners.MetaTrainer` (checkpoints, callbacks, resume) on an
:class:`~tfmetarec.tasks.EpisodeSampler` with ``task_key="item"``.
"""

from __future__ import annotations

from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.losses import mean_over_tasks, task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.models.metaemb import MetaEmb
from tfmetarec.options import AtLeast, AtMost
from tfmetarec.types import ITEM_ID, MASK, QUERY, RATING, SUPPORT, TASK_MASK, Episode, Features, features_of

ITEM_EMBEDDING = "item_embedding"
HAS_SUPPORT = "has_support"


@keras.saving.register_keras_serializable(package="tfmetarec")
class MetaEmbeddingLearner(MetaLearner):
    """Trains a :class:`~tfmetarec.models.MetaEmb`'s generator on item tasks (learner name
    ``"metaemb_generator"``); see the module docstring.

    Args:
        model: a MetaEmb whose decision layers and embeddings are already trained.
        cold_weight: weight of the cold-phase loss (``alpha`` in the paper, 0.1 there).
        warm_lr: step size of the warm-up step on the generated embedding (0.03 by default:
            on the MeLU-sized model 0.1 overshoots, see ``benchmarks/metaemb_item_cold.py``).
        **kwargs: ``query_loss`` and Keras' arguments (the query loss is not used: the
            objective is the two-phase one).
    """

    gradient_based = True
    task_key = "item"
    """Its tasks are items: every row of a task rates the same item."""

    def __init__(self, model: MetaModel, cold_weight: Annotated[float, AtLeast(0), AtMost(1)] = 0.1,
                 warm_lr: Annotated[float, AtLeast(0)] = 0.03, **kwargs: Any):
        if not isinstance(model, MetaEmb):
            raise ValueError(f"The metaemb_generator learner trains a MetaEmb's generator; got a "
                             f"{type(model).__name__} (use model 'metaemb').")
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        self._generator = model.param_groups()["generator"]

    def meta_variables(self) -> list:
        params = self.model.parameters()
        return [params[name] for name in self._generator]

    def _warm_step(self, phi: tf.Tensor, part: Episode) -> tuple[tf.Tensor, tf.Tensor]:
        """``(phi', loss)``: one gradient step of size ``warm_lr`` on each task's embedding for the
        loss ``[T]`` of the rows of ``part`` (a task without rows keeps its embedding)."""
        params = self.model.variable_values()
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(phi)
            loss = task_mse(self.model.forward_with_item_embedding(params, phi, features_of(part)), part[RATING],
                            part[MASK])
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, phi)  # each task's own gradient (tasks are independent)
        return phi - tf.cast(self.warm_lr, phi.dtype) * grad, loss

    def _generated(self, part: Episode) -> tf.Tensor:
        """The generated embedding ``[T, e]`` of each task's item (from its first real row)."""
        first = tf.argmax(tf.cast(part[MASK], tf.float32), axis=-1, output_type=tf.int32)
        item = tf.gather(part[ITEM_ID], first, batch_dims=1)[:, None]
        return self.model.generate_item_embedding(self.model.variable_values(), {ITEM_ID: item})[:, 0, :]

    @staticmethod
    def _has_rows(part: Episode) -> tf.Tensor:
        return tf.cast(tf.reduce_sum(tf.cast(part[MASK], tf.float32), axis=-1) > 0, tf.float32)

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        warmed, _ = self._warm_step(self._generated(support), support)
        return {ITEM_EMBEDDING: warmed, HAS_SUPPORT: tf.cast(self._has_rows(support), warmed.dtype)}

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        params = self.model.variable_values()
        warmed = self.model.forward_with_item_embedding(params, state[ITEM_EMBEDDING], query)
        generated = self.model.forward(params, query)  # no rating yet: the content's own embedding
        has = tf.cast(state[HAS_SUPPORT], warmed.dtype)[:, None]
        return has * warmed + (1.0 - has) * generated

    def update(self, state: dict[str, tf.Tensor], new_support: Episode) -> dict[str, tf.Tensor]:
        """One more warm-up step on the new ratings, from the state's embedding (an item that had
        none yet starts from its generated one); a task with no new rating keeps its state."""
        has = state[HAS_SUPPORT]
        start = has[:, None] * state[ITEM_EMBEDDING] + (1.0 - has[:, None]) * self._generated(new_support)
        warmed, _ = self._warm_step(start, new_support)
        arrived = tf.cast(self._has_rows(new_support), warmed.dtype)
        return {**state, ITEM_EMBEDDING: arrived[:, None] * warmed + (1.0 - arrived[:, None]) * state[ITEM_EMBEDDING],
                HAS_SUPPORT: tf.maximum(has, arrived)}

    def meta_loss(self, episode: Episode) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        warmed, cold = self._warm_step(self._generated(episode[SUPPORT]), episode[SUPPORT])
        query = episode[QUERY]
        pred = self.model.forward_with_item_embedding(self.model.variable_values(), warmed, features_of(query))
        warm = task_mse(pred, query[RATING], query[MASK])
        cold_loss = mean_over_tasks(cold, episode[TASK_MASK])
        warm_loss = mean_over_tasks(warm, episode[TASK_MASK])
        loss = self.cold_weight * cold_loss + (1.0 - self.cold_weight) * warm_loss
        return loss, {"loss": loss, "cold_loss": cold_loss, "warm_loss": warm_loss}
