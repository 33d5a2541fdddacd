"""Two-tower retrieval model: a user tower and an item tower meeting in a dot product."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import VectorAndBias, broadcast_user_state, id_mask
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.options import AtLeast
from tfmetarec.types import Features, Params


@keras.saving.register_keras_serializable(package="tfmetarec")
class TwoTower(VectorAndBias, MetaModel):
    """User and item towers scored by a dot product (model name ``"two_tower"``).

    ``r(u, i) = <[e_u, 1], [v_i, b_i]> + mu`` where ``e_u = MLP_user(user fields
    [, user ID])`` and ``[v_i, b_i] = MLP_item(item fields) + [i known] ·
    [Q[i], B[i]]``: a new item (ID index 0) is placed by its content alone, a known
    one also gets its ID residual. Because the score is a plain dot product of a user
    vector and an item vector (plus a constant), the whole catalogue can be ranked
    for a user with a brute-force top-k search over precomputed item vectors
    (:mod:`tfmetarec.evaluation.retrieval` uses keras-rs' ``BruteForceRetrieval``).

    Training: the learners fit ratings (MSE) and, by default for this model, add an in-batch
    softmax over the episode's query items (:class:`~tfmetarec.objectives.QueryLoss`'s
    ``retrieval_weight``, 0.1 unless set): each liked query item must outscore every other
    item of the batch for its user.

    Parameter groups: ``"user_tower"`` (= ``"decision"``, the learners' default:
    the adapted part), ``"user_head"`` (the user tower's last layer),
    ``"item_tower"`` (content embeddings, item MLP and ID residuals), ``"all"``.

    Args:
        hidden_units: hidden ReLU layers of each tower.
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel`
            (``embedding_dim`` is also the width ``d`` of the shared space; ``use_ids``
            embeds the user ID in the user tower, new users have ID 0).
    """

    dot_product_scores = True  # score = <user_representation, item_representation> + mu
    default_retrieval_weight = 0.1

    def __init__(self, hidden_units: Annotated[Sequence[int], AtLeast(1)] = (64,), **kwargs: Any):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not self.user_fields and not self.use_ids:
            raise ValueError("TwoTower's user tower needs user fields or use_ids=True.")
        if not self.item_fields:
            raise ValueError("TwoTower's item tower needs item content: some item_fields.")
        d, seed, dims, pooling = self.embedding_dim, self.seed, self.field_dims, self.list_pooling

        def seed_at(i: int) -> int | None:
            return None if seed is None else seed + i

        self.user_embeddings = FieldEmbeddings(self, "user_", self.user_field_specs, d, dims, pooling, seed, 0)
        width = self.user_embeddings.width
        if self.use_ids:
            self.add_weight(shape=(self.num_users, d), name="user_id_embedding",
                            initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed_at(1)))
            width += d
        self._user_layers = F.add_mlp(self, "user_tower", width, [*self.hidden_units, d], seed, 2)
        self.item_embeddings = FieldEmbeddings(self, "item_", self.item_field_specs, d, dims, pooling, seed, 20)
        self._item_tables = list(self.item_embeddings.names)
        self._item_layers = F.add_mlp(self, "item_tower", self.item_embeddings.width, [*self.hidden_units, d + 1],
                                      seed, 30)
        self.add_weight(shape=(self.num_items, d + 1), name="item_id_residual",
                        initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed_at(40)))
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="global_bias")
        self.built = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        user = tuple(self._user_layers)
        item = (*self._item_tables, *self._item_layers, "item_id_residual")
        return {
            "all": tuple(self.parameters()),
            "user_tower": user,
            "decision": user,
            "user_head": user[-2:],
            "item_tower": item,
        }

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        """``[e_u, 1]`` of every row: ``[..., d + 1]`` (the query vector of retrieval)."""
        x = F.mlp(self.user_inputs(params, features), params, "user_tower", len(self.hidden_units) + 1)
        return tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        """``[v_i, b_i]`` of every row: ``[..., d + 1]`` (the candidate vector of retrieval)."""
        x = self.item_embeddings(params, self.item_field_indices(features))
        x = F.mlp(x, params, "item_tower", len(self.hidden_units) + 1)
        ids = self.item_id_index(features)
        return x + id_mask(ids, x.dtype) * F.embed(params["item_id_residual"], ids)

    def _global(self, params: Params, scores: tf.Tensor) -> tf.Tensor:
        mu = params["global_bias"]
        return scores + (mu[:, None] if len(mu.shape) == 1 else mu)

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        users = self.user_representation(params, features)
        items = self.item_representation(params, features)
        return self.with_item_offset(self._global(params, tf.reduce_sum(users * items, axis=-1)), features)

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        items = self.item_representation(params, features)
        scores = self._global(params, tf.reduce_sum(broadcast_user_state(user_state, items) * items, axis=-1))
        return self.with_item_offset(scores, features)
