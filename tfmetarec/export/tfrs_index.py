"""Top-k over the catalogue through a TensorFlow Recommenders index, fed with adapted user vectors.

The exported ``recommend`` signature already ranks the whole catalogue (keras-rs'
``BruteForceRetrieval`` for dot-product models, full scoring otherwise). Use this module
when the catalogue outgrows brute force and you want TFRS's approximate ScaNN index, or
when your serving stack already holds TFRS indexes: :class:`TfrsRecommender` puts the
model's item vectors into ``tfrs.layers.factorized_top_k.BruteForce`` (or ``ScaNN`` when
the ``scann`` package is installed) and queries it with the user vectors a learner adapts.
Only dot-product models qualify (``model.dot_product_scores``, e.g. the two-tower model)
under a learner that adapts user-side parameters.

TFRS 0.7 needs Keras 2: install ``tfmetarec[tfrs]`` (TensorFlow pinned to yours) and set
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported. ``import keras`` stays Keras 3 in
such a process, so the library's models run unchanged beside the index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfmetarec.evaluation.retrieval import uses_vector_search
from tfmetarec.learners.base import MetaLearner
from tfmetarec.types import ITEM_ID, USER_FIELDS, USER_ID

INDEXES = ("brute_force", "scann")


def _tfrs():
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise ImportError("tensorflow-recommenders 0.7 needs Keras 2: set TF_USE_LEGACY_KERAS=1 before TensorFlow "
                          "is imported (and pip install 'tfmetarec[tfrs]' with your TensorFlow pinned).")
    try:
        import tensorflow_recommenders as tfrs
    except ImportError as err:
        raise ImportError("TfrsRecommender needs tensorflow-recommenders: pip install 'tfmetarec[tfrs]' with your "
                          "TensorFlow pinned.") from err
    return tfrs


class TfrsRecommender:
    """A TFRS top-k index over a learner's catalogue (see the module docstring).

    Args:
        learner: a learner whose model scores by a dot product and whose adaptation
            changes user-side parameters only.
        k: items per answer.
        index: ``"brute_force"`` (exact) or ``"scann"`` (approximate; needs ``scann``).
        depth: extra candidates fetched so that up to ``depth`` rated items can be left out.
    """

    def __init__(self, learner: MetaLearner, k: int = 10, index: str = "brute_force", depth: int = 512):
        if not uses_vector_search(learner):
            raise ValueError(f"{type(learner).__name__} on {type(learner.model).__name__} does not rank by a dot "
                             "product of an adapted user vector and fixed item vectors; use the exported "
                             "`recommend` signature instead.")
        if index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, got {index!r}.")
        tfrs = _tfrs()
        self.learner, self.model, self.k = learner, learner.model, int(k)
        raw = self.model.item_raw_ids
        rows = np.flatnonzero(raw >= 0).astype(np.int32)
        vectors = self.model.search_item_vectors(self.model.variable_values(), {ITEM_ID: rows})
        self.fetch = int(min(self.k + depth, len(rows)))
        ids = tf.constant(raw[rows].astype(np.int64))
        if index == "scann":
            self.index = tfrs.layers.factorized_top_k.ScaNN(k=self.fetch)
        else:
            self.index = tfrs.layers.factorized_top_k.BruteForce(k=self.fetch)
        self.index.index(tf.cast(vectors, tf.float32), ids)
        mu = self.model.variable_values().get("global_bias")
        self.bias = 0.0 if mu is None else float(mu)

    def user_vectors(self, state: Mapping[str, tf.Tensor], user_index: np.ndarray, user_fields: np.ndarray
                     ) -> tf.Tensor:
        """The adapted query vector ``[T, D]`` of each user of a learner state."""
        params = {**self.model.variable_values(), **state}
        one = {USER_ID: tf.constant(np.asarray(user_index, np.int32)[:, None]), ITEM_ID: tf.zeros([len(user_index), 1],
                                                                                                   tf.int32),
               USER_FIELDS: tf.constant(np.asarray(user_fields, np.int32)[:, None, :])}
        return self.model.search_query(params, one)[:, 0]

    def recommend(self, state: Mapping[str, tf.Tensor], user_index: np.ndarray, user_fields: np.ndarray,
                  rated: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Raw item IDs and scores ``[T, k]`` of each user's top items, ``rated`` raw IDs left out."""
        scores, ids = self.index(self.user_vectors(state, user_index, user_fields))
        scores, ids = scores.numpy() + self.bias, ids.numpy()
        out_ids = np.full((len(ids), self.k), -1, np.int64)
        out_scores = np.full((len(ids), self.k), -np.inf, np.float32)
        for t in range(len(ids)):
            keep = [j for j, item in enumerate(ids[t]) if int(item) not in rated[t]][: self.k]
            out_ids[t, : len(keep)] = ids[t][keep]
            out_scores[t, : len(keep)] = scores[t][keep]
        return out_ids, out_scores


__all__ = ["TfrsRecommender"]
