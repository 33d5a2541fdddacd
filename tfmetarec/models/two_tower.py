"""Two-tower retrieval model: a user tower and an item tower meeting in a dot product."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel, check_features
from tfmetarec.models.cf import broadcast_user_state, id_mask
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.types import USER_FIELDS, USER_ID, Features, FieldSpec, Params


@keras.saving.register_keras_serializable(package="tfmetarec")
class TwoTower(MetaModel):
    """User and item towers scored by a dot product (model name ``"two_tower"``).

    ``r(u, i) = <[e_u, 1], [v_i, b_i]> + mu`` where ``e_u = MLP_user(user fields
    [, user ID])`` and ``[v_i, b_i] = MLP_item(item fields) + [i known] ·
    [Q[i], B[i]]``: a new item (ID index 0) is placed by its content alone, a known
    one also gets its ID residual. Because the score is a plain dot product of a user
    vector and an item vector (plus a constant), the whole catalogue can be ranked
    for a user with a brute-force top-k search over precomputed item vectors
    (:mod:`tfmetarec.evaluation.retrieval` uses keras-rs' ``BruteForceRetrieval``).

    Training: the learners fit ratings (MSE) and, with ``retrieval_weight > 0``,
    add an in-batch softmax over the episode's query items
    (:func:`tfmetarec.learners.losses.in_batch_softmax_loss`): each liked query
    item must outscore every other item of the batch for its user.

    Parameter groups: ``"user_tower"`` (= ``"decision"``, the learners' default:
    the adapted part), ``"user_head"`` (the user tower's last layer),
    ``"item_tower"`` (content embeddings, item MLP and ID residuals), ``"all"``.

    Args:
        user_fields, item_fields: the user and item fields (:class:`~tfmetarec.types.FieldSpec`).
        embedding_dim: width ``d`` of the field embeddings and of the shared space.
        field_dims: per-field embedding widths, by field name.
        hidden_units: hidden ReLU layers of each tower.
        num_users: user ID vocabulary size (embedded with ``use_ids``).
        num_items: item ID vocabulary size (ID residuals; row 0 is never used).
        use_ids: embed the user ID in the user tower (new users have ID 0).
        retrieval_weight: weight of the in-batch softmax term in meta-training.
        retrieval_temperature: the softmax divides scores by this.
        list_pooling: ``"mean"`` or ``"sum"`` over a list field's values.
        output_bias: initial global mean ``mu``.
        seed: initialiser seed.
    """

    dot_product_scores = True  # score = <user_representation, item_representation> + mu

    def __init__(
        self,
        user_fields: Sequence[FieldSpec] = (),
        item_fields: Sequence[FieldSpec] = (),
        embedding_dim: int = 32,
        field_dims: Mapping[str, int] | None = None,
        hidden_units: Sequence[int] = (64,),
        num_users: int = 1,
        num_items: int = 1,
        use_ids: bool = False,
        retrieval_weight: float = 0.1,
        retrieval_temperature: float = 0.5,
        list_pooling: str = "mean",
        output_bias: float = 3.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not user_fields and not self.use_ids:
            raise ValueError("TwoTower's user tower needs user fields or use_ids=True.")
        if not item_fields:
            raise ValueError("TwoTower's item tower needs item content: some item_fields.")
        if self.embedding_dim < 1 or self.num_items < 1 or self.num_users < 1:
            raise ValueError("embedding_dim, num_users and num_items must be >= 1.")
        if self.retrieval_weight < 0 or self.retrieval_temperature <= 0:
            raise ValueError("retrieval_weight must be >= 0 and retrieval_temperature > 0.")
        d = self.embedding_dim

        def seed_at(i: int) -> int | None:
            return None if seed is None else seed + i

        self.user_embeddings = FieldEmbeddings(self, "user_", self.user_field_specs, d, field_dims, list_pooling,
                                               seed, 0)
        width = self.user_embeddings.width
        if self.use_ids:
            self.add_weight(shape=(self.num_users, d), name="user_id_embedding",
                            initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed_at(1)))
            width += d
        self._user_layers = F.add_mlp(self, "user_tower", width, [*self.hidden_units, d], seed, 2)
        self.item_embeddings = FieldEmbeddings(self, "item_", self.item_field_specs, d, field_dims, list_pooling,
                                               seed, 20)
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

    @property
    def user_state_dim(self) -> int:
        return self.embedding_dim + 1

    @property
    def item_dim(self) -> int:
        return self.embedding_dim + 1

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        """``[e_u, 1]`` of every row: ``[..., d + 1]`` (the query vector of retrieval)."""
        parts = []
        if self.user_embeddings:
            check_features(features, [USER_FIELDS], "TwoTower")
            parts.append(self.user_embeddings(params, features[USER_FIELDS]))
        if self.use_ids:
            check_features(features, [USER_ID], "TwoTower")
            parts.append(F.embed(params["user_id_embedding"], features[USER_ID]))
        x = F.mlp(tf.concat(parts, axis=-1), params, "user_tower", len(self.hidden_units) + 1)
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
        return self._global(params, tf.reduce_sum(users * items, axis=-1))

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        items = self.item_representation(params, features)
        return self._global(params, tf.reduce_sum(broadcast_user_state(user_state, items) * items, axis=-1))
