"""MeLU-style preference estimator (Lee et al., KDD 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.models.decision import DecisionStack
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.options import AtLeast
from tfmetarec.types import ITEM_REPRESENTATION, Features, Params


@keras.saving.register_keras_serializable(package="tfmetarec")
class MeLU(DecisionStack, MetaModel):
    """One embedding per user and item field, concatenated, through a decision MLP.

    As in the paper: gender, age, occupation and zip each get an embedding, and so do
    the item's fields (rate, genres, directors, actors, ...); list fields pool their
    values' embeddings. The concatenation goes through ``hidden_units`` ReLU layers
    and a linear rating output (MeLU's own sizes: 8 fields of 32, then 64, 64, 1).

    Args:
        hidden_units: widths of the decision layers before the rating output.
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel` (fields,
            ``embedding_dim``, ``field_dims``, ``use_ids``: embed user and item IDs as two
            more fields, which MeLU itself does not, ...).
    """

    def __init__(self, hidden_units: Annotated[Sequence[int], AtLeast(1)] = (64, 64), **kwargs: Any):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not self.user_fields and not self.item_fields and not self.use_ids:
            raise ValueError("MeLU needs at least one user or item field (or use_ids=True).")
        e, seed, dims, pooling = self.embedding_dim, self.seed, self.field_dims, self.list_pooling
        self.user_embeddings = FieldEmbeddings(self, "user_", self.user_field_specs, e, dims, pooling, seed, 0)
        self.item_embeddings = FieldEmbeddings(self, "item_", self.item_field_specs, e, dims, pooling, seed, 50)
        width = self.user_embeddings.width + self.item_embeddings.width
        if self.use_ids:
            init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
            self.add_weight(shape=(self.num_users, e), initializer=init, name="user_id_embedding")
            self.add_weight(shape=(self.num_items, e), initializer=init, name="item_id_embedding")
            width += 2 * e
        self._decision = F.add_mlp(self, "decision", width, [*self.hidden_units, 1], seed, 1, self.output_bias)
        self.built = True

    reads_item_representation = True
    reads_one_user_row = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        groups = self.decision_groups(self._decision)
        return {**groups, "embeddings": tuple(n for n in groups["all"] if n not in self._decision)}

    @property
    def user_state_dim(self) -> int:
        return self.user_embeddings.width + int(self.use_ids) * self.embedding_dim

    @property
    def item_dim(self) -> int:
        return self.item_embeddings.width + int(self.use_ids) * self.embedding_dim

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        users = self.user_inputs(params, features)
        if users is None:
            raise ValueError("This MeLU has no user inputs, so it has no user representation.")
        return users

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        if ITEM_REPRESENTATION in features:
            return features[ITEM_REPRESENTATION]
        parts = []
        if self.item_embeddings:
            parts.append(self.item_embeddings(params, self.item_field_indices(features)))
        if self.use_ids:
            parts.append(F.embed(params["item_id_embedding"], self.item_id_index(features)))
        if not parts:
            raise ValueError("This MeLU has no item inputs, so it has no item representation.")
        return tf.concat(parts, axis=-1)

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        return self.decide_sides(params, *self._sides(params, features), features)

    def represent(self, params: Params, features: Features, adapt_names: Sequence[str]) -> tf.Tensor | None:
        """The user and item representations side by side, when only decision layers adapt."""
        return self._joint(params, features) if set(adapt_names) <= set(self._decision) else None

    def _sides(self, params: Params, features: Features) -> tuple[tf.Tensor | None, tf.Tensor | None]:
        """The user and the item representation (None for a side the model does not read)."""
        users = self.user_representation(params, features) if self.user_embeddings or self.use_ids else None
        items = self.item_representation(params, features) if self.item_embeddings or self.use_ids else None
        return users, items

    def _joint(self, params: Params, features: Features) -> tf.Tensor:
        return tf.concat([x for x in self._sides(params, features) if x is not None], axis=-1)

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        items = self.item_representation(params, features)  # [T, N, item_dim]
        users = tf.broadcast_to(
            user_state[:, None, :], tf.concat([tf.shape(items)[:-1], [tf.shape(user_state)[-1]]], axis=0)
        )
        return self.with_item_offset(self._decide(params, tf.concat([users, items], axis=-1)), features)
