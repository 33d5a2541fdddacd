"""A memory-augmented MAML in the spirit of MAMO (Dong et al., KDD 2020): two memories give each
task its own starting point before the inner steps.

MAML starts every user from the same weights. Here the start is personalised:

* the **feature memory** is read with the user's profile (the model's user representation of
  the support's first row): softmax attention over ``memory_slots`` learned keys mixes the
  slots' parameter offsets, so users who look alike start alike;
* the **task memory** is read with what the support says about the task: the rating-weighted
  mean of the support items' representations (ratings centred on the task's own mean), so
  users who rated alike start alike, before a single gradient step.

The start is ``meta-weights + feature offset + task offset`` for the adapted parameters; the
inner loop (and ``update`` as ratings arrive) is MAML's from there. Unlike MAMO, whose memories
are written by moving averages, both memories here are learned by the outer optimizer with the
rest of the meta-parameters (the meta-gradient reaches them through the inner loop), so the
learner trains, checkpoints and exports like every other.
"""

from __future__ import annotations

from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.learners.maml import MAML
from tfmetarec.models.base import MetaModel
from tfmetarec.options import Above, AtLeast
from tfmetarec.types import MASK, RATING, Episode, features_of


@keras.saving.register_keras_serializable(package="tfmetarec")
class MemoryAugmentedMAML(MAML):
    """MAML from a personalised start read out of a feature memory and a task memory.

    Args:
        model: a model with user and item representations (``user_state_dim`` and
            ``item_dim`` set: MeLU, MetaEmb, the two-tower, content and CF models).
        memory_slots: slots of each memory.
        temperature: softmax temperature of the attention over a memory's keys (cosine
            similarities, so in [-1, 1] before scaling).
        **kwargs: MAML's settings (``inner_steps``, ``inner_lr``, ``adapt``, ...).
    """

    def __init__(self, model: MetaModel, memory_slots: Annotated[int, AtLeast(1)] = 8,
                 temperature: Annotated[float, Above(0)] = 0.1, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        if model.user_state_dim is None or not model.item_dim:
            raise ValueError(f"The memory-augmented MAML reads a user's profile and the support's items through "
                             f"the model's user and item representations; {type(model).__name__} has none.")
        keys = keras.initializers.RandomNormal(stddev=1.0, seed=model.seed)
        params = model.parameters()
        self.has_profile = model.user_state_dim > 0  # without user inputs, the task memory alone
        self.feature_keys, self.feature_values = None, []
        if self.has_profile:
            self.feature_keys = self.add_weight(shape=(memory_slots, model.user_state_dim), initializer=keys,
                                                name="feature_memory_keys")
            self.feature_values = [self.add_weight(shape=(memory_slots, *params[n].shape), initializer="zeros",
                                                   name=f"feature_memory_{n}") for n in self.adapt_names]
        self.task_keys = self.add_weight(shape=(memory_slots, model.item_dim), initializer=keys,
                                         name="task_memory_keys")
        self.task_values = [self.add_weight(shape=(memory_slots, *params[n].shape), initializer="zeros",
                                            name=f"task_memory_{n}") for n in self.adapt_names]

    def _attention(self, query: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        """Softmax over the slots of the cosine similarity of ``query [T, D]`` to each key: ``[T, K]``."""
        similarity = tf.matmul(tf.math.l2_normalize(query, -1), tf.math.l2_normalize(keys, -1), transpose_b=True)
        return tf.nn.softmax(similarity / self.temperature, axis=-1)

    def memory_reads(self, support: Episode) -> tuple[tf.Tensor | None, tf.Tensor]:
        """The attention ``[T, K]`` of each task over the feature memory (None without user
        inputs) and over the task memory."""
        params = self.model.variable_values()
        features = features_of(support)
        items = self.model.item_representation(params, features)  # [T, S, item_dim]
        mask = tf.cast(support[MASK], items.dtype)
        count = tf.maximum(tf.reduce_sum(mask, -1, keepdims=True), 1.0)
        by_feature = None
        if self.has_profile:  # every real row holds the task's user: their mean is its profile
            users = self.model.user_representation(params, features)
            profile = tf.reduce_sum(users * mask[..., None], axis=1) / count
            by_feature = self._attention(profile, self.feature_keys)
        rating = tf.cast(support[RATING], items.dtype)
        centred = (rating - tf.reduce_sum(rating * mask, -1, keepdims=True) / count) * mask
        taste = tf.reduce_sum(items * centred[..., None], axis=1) / count  # [T, item_dim]
        return by_feature, self._attention(taste, self.task_keys)

    def task_start(self, support: Episode) -> dict[str, tf.Tensor]:
        """Each task's starting weights for the adapted parameters: ``[T, ...]`` each."""
        by_feature, by_task = self.memory_reads(support)
        params = self.model.variable_values()
        start = {}
        for k, (name, task) in enumerate(zip(self.adapt_names, self.task_values)):
            offset = tf.tensordot(by_task, task, axes=[[1], [0]])
            if by_feature is not None:
                offset += tf.tensordot(by_feature, self.feature_values[k], axes=[[1], [0]])
            start[name] = params[name][None] + offset
        return start
