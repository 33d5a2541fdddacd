"""Non-personalised baselines from item statistics of the training ratings."""

from __future__ import annotations

from typing import Annotated, Any

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.losses import mean_over_tasks, task_mse
from tfmetarec.models.base import MetaModel, check_features
from tfmetarec.options import Above, AtLeast
from tfmetarec.types import ITEM_ID, MASK, QUERY, RATING, TASK_MASK, Episode, Features


class ItemStatisticsLearner(MetaLearner):
    """Holds a non-trainable table of each item's rating count and sum (indexed by
    the item ID vocabulary index; 0 = out of vocabulary) and the global mean.

    Fill it with :meth:`fit_statistics` (or :meth:`set_statistics`); it is
    saved with the learner. These learners do not adapt and have no
    meta-variables: their ``meta_gradients`` are empty lists and a training
    step only logs the query loss.
    """

    gradient_based = False
    needs_training_ratings = True

    def __init__(self, model: MetaModel, num_items: Annotated[int, AtLeast(1)] | None = None,
                 global_mean: float = 3.5, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())
        self.num_items = int(model.num_items if num_items is None else num_items)
        self.item_count = self.add_weight(shape=(self.num_items,), initializer="zeros", trainable=False, name="item_count")
        self.item_sum = self.add_weight(shape=(self.num_items,), initializer="zeros", trainable=False, name="item_sum")
        self.global_mean_value = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.global_mean), trainable=False,
            name="global_mean",
        )

    def set_statistics(self, counts: np.ndarray, sums: np.ndarray, global_mean: float | None = None) -> None:
        """Set the per-item counts and rating sums ``[num_items]`` (index 0 is ignored)."""
        counts = np.asarray(counts, "float64").copy()
        sums = np.asarray(sums, "float64").copy()
        if counts.shape != (self.num_items,) or sums.shape != (self.num_items,):
            raise ValueError(f"Expected counts and sums of shape ({self.num_items},), got {counts.shape}, {sums.shape}.")
        counts[0] = sums[0] = 0.0  # the OOV row always falls back to the global mean
        if global_mean is None:
            global_mean = sums.sum() / counts.sum() if counts.sum() else self.global_mean
        self.item_count.assign(counts.astype(self.item_count.dtype))
        self.item_sum.assign(sums.astype(self.item_sum.dtype))
        self.global_mean_value.assign(float(global_mean))

    def fit_training_ratings(self, item_ids: np.ndarray, ratings: np.ndarray) -> None:
        self.fit_statistics(item_ids, ratings)

    def fit_statistics(self, item_ids: np.ndarray, ratings: np.ndarray) -> ItemStatisticsLearner:
        """Count and average ``ratings`` per encoded item ID (``item_ids``, same length)."""
        ids = np.asarray(item_ids, dtype="int64")
        values = np.asarray(ratings, dtype="float64")
        if ids.shape != values.shape or ids.ndim != 1:
            raise ValueError(f"item_ids {ids.shape} and ratings {values.shape} must be 1-D and the same length.")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_items):
            raise ValueError(f"Item IDs span [{ids.min()}, {ids.max()}], outside [0, num_items={self.num_items}).")
        if not np.isfinite(values).all():
            raise ValueError("ratings contain NaN or infinite values.")
        counts = np.bincount(ids, minlength=self.num_items).astype("float64")
        sums = np.bincount(ids, weights=values, minlength=self.num_items)
        self.set_statistics(counts, sums, float(values.mean()) if len(values) else None)
        return self

    def adapt(self, support: Episode) -> dict[str, tf.Tensor]:
        return {}

    def lookup(self, query: Features) -> tuple[tf.Tensor, tf.Tensor]:
        """Count and rating sum of every query item (OOV and unknown IDs: 0)."""
        check_features(query, [ITEM_ID], type(self).__name__)
        ids = tf.cast(query[ITEM_ID], tf.int32)
        inside = (ids > 0) & (ids < self.num_items)
        safe = tf.where(inside, ids, tf.zeros_like(ids))
        return tf.gather(self.item_count, safe), tf.gather(self.item_sum, safe)

    def meta_variables(self) -> list:
        return []

    def task_gradients(self, episode: Episode) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        query = episode[QUERY]
        pred = self(episode)
        loss = mean_over_tasks(task_mse(pred, query[RATING], query[MASK]), episode[TASK_MASK])
        return [], {"loss": loss}


@keras.saving.register_keras_serializable(package="tfmetarec")
class Popularity(ItemStatisticsLearner):
    """Predicts the global mean plus ``ranking_scale * log(1 + count) / log(1 + max count)``,
    so items rank by how often they were rated while the rating error stays that of the mean."""

    def __init__(self, model: MetaModel, ranking_scale: Annotated[float, AtLeast(0)] = 0.01, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        count, _ = self.lookup(query)
        top = tf.math.log1p(tf.reduce_max(self.item_count))
        popularity = tf.math.log1p(count) / tf.maximum(top, 1e-6)
        return self.global_mean_value + self.ranking_scale * popularity



@keras.saving.register_keras_serializable(package="tfmetarec")
class ItemMean(ItemStatisticsLearner):
    """Predicts each item's mean rating shrunk toward the global mean:
    ``(sum + shrinkage * mean) / (count + shrinkage)``; OOV items get the global mean."""

    def __init__(self, model: MetaModel, shrinkage: Annotated[float, Above(0)] = 5.0, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.keep_arguments(locals())

    def score(self, state: dict[str, tf.Tensor], query: Features) -> tf.Tensor:
        count, total = self.lookup(query)
        return (total + self.shrinkage * self.global_mean_value) / (count + self.shrinkage)

