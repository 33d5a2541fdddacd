"""MeLU-style preference estimator (Lee et al., KDD 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel, check_features
from tfmetarec.types import ITEM_CAT, ITEM_ID, ITEM_MULTI, USER_CAT, USER_ID, Features, Params


@keras.saving.register_keras_serializable(package="tfmetarec")
class MeLU(MetaModel):
    """Embeddings of user and item features, concatenated, through a decision MLP.

    Args:
        user_vocab_sizes: vocabulary size of each categorical user field (index 0 = OOV).
        item_vocab_sizes: vocabulary size of each categorical item field.
        num_genres: width of the multi-hot item content vector (0 for none).
        embedding_dim: size of every feature embedding.
        hidden_units: widths of the decision layers before the rating output.
        num_users: user ID vocabulary size; with ``use_ids`` the ID gets an embedding.
        num_items: item ID vocabulary size.
        use_ids: embed user and item IDs as two more fields (MeLU itself does not).
        output_bias: initial value of the output bias (a typical mean rating).
        seed: initialiser seed.
    """

    def __init__(
        self,
        user_vocab_sizes: Sequence[int],
        item_vocab_sizes: Sequence[int],
        num_genres: int = 0,
        embedding_dim: int = 32,
        hidden_units: Sequence[int] = (64, 64),
        num_users: int = 1,
        num_items: int = 1,
        use_ids: bool = False,
        output_bias: float = 3.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not self.user_vocab_sizes and not self.item_vocab_sizes and not self.num_genres and not use_ids:
            raise ValueError("MeLU needs at least one user or item feature (or use_ids=True).")

        emb_init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
        width = 0
        self._user_offsets = np.cumsum([0] + self.user_vocab_sizes[:-1]).astype("int32")
        self._item_offsets = np.cumsum([0] + self.item_vocab_sizes[:-1]).astype("int32")
        if self.user_vocab_sizes:
            self.add_weight(shape=(sum(self.user_vocab_sizes), embedding_dim), initializer=emb_init, name="user_embedding")
            width += len(self.user_vocab_sizes) * embedding_dim
        if self.item_vocab_sizes:
            self.add_weight(shape=(sum(self.item_vocab_sizes), embedding_dim), initializer=emb_init, name="item_embedding")
            width += len(self.item_vocab_sizes) * embedding_dim
        if self.num_genres:
            self.add_weight(shape=(self.num_genres, embedding_dim), initializer=emb_init, name="genre_embedding")
            width += embedding_dim
        if self.use_ids:
            self.add_weight(shape=(self.num_users, embedding_dim), initializer=emb_init, name="user_id_embedding")
            self.add_weight(shape=(self.num_items, embedding_dim), initializer=emb_init, name="item_id_embedding")
            width += 2 * embedding_dim
        self._decision = F.add_mlp(self, "decision", width, [*self.hidden_units, 1], seed, 1, self.output_bias)
        self.built = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        names = tuple(self.parameters())
        n = len(self.hidden_units)
        return {
            "all": names,
            "decision": tuple(self._decision),
            "head": (f"decision_{n}_kernel", f"decision_{n}_bias"),
            "embeddings": tuple(n_ for n_ in names if n_ not in self._decision),
        }

    @property
    def user_state_dim(self) -> int:
        return (len(self.user_vocab_sizes) + int(self.use_ids)) * self.embedding_dim

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        parts = []
        if self.user_vocab_sizes:
            check_features(features, [USER_CAT], "MeLU")
            parts.append(F.embed_fields(params["user_embedding"], features[USER_CAT], self._user_offsets))
        if self.use_ids:
            check_features(features, [USER_ID], "MeLU")
            parts.append(F.embed(params["user_id_embedding"], features[USER_ID]))
        if not parts:
            raise ValueError("This MeLU has no user inputs, so it has no user representation.")
        return tf.concat(parts, axis=-1)

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        parts = []
        if self.item_vocab_sizes:
            check_features(features, [ITEM_CAT], "MeLU")
            parts.append(F.embed_fields(params["item_embedding"], features[ITEM_CAT], self._item_offsets))
        if self.num_genres:
            check_features(features, [ITEM_MULTI], "MeLU")
            table = params["genre_embedding"]
            parts.append(F.embed_multi_hot(table, tf.cast(features[ITEM_MULTI], table.dtype)))
        if self.use_ids:
            check_features(features, [ITEM_ID], "MeLU")
            parts.append(F.embed(params["item_id_embedding"], features[ITEM_ID]))
        if not parts:
            raise ValueError("This MeLU has no item inputs, so it has no item representation.")
        return tf.concat(parts, axis=-1)

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        parts = []
        if self.user_vocab_sizes or self.use_ids:
            parts.append(self.user_representation(params, features))
        if self.item_vocab_sizes or self.num_genres or self.use_ids:
            parts.append(self.item_representation(params, features))
        return self._decide(params, tf.concat(parts, axis=-1))

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        items = self.item_representation(params, features)  # [T, N, item_dim]
        users = tf.broadcast_to(
            user_state[:, None, :], tf.concat([tf.shape(items)[:-1], [tf.shape(user_state)[-1]]], axis=0)
        )
        return self._decide(params, tf.concat([users, items], axis=-1))

    def _decide(self, params: Params, x: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(F.mlp(x, params, "decision", len(self.hidden_units) + 1), axis=-1)
