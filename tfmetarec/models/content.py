"""Content-based preference model: an item tower over item content and an adapted user vector."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import BilinearModel, UserSide, add_content_embeddings, item_content
from tfmetarec.types import Features, Params


class ItemTower:
    """``[v_i, b_i] = MLP(content(i))`` of width ``dim + 1`` from item content only
    (item-field embeddings and the mean genre embedding; no item ID), so a new
    item is scored exactly like a known one with the same content.

    Weights (under ``prefix``): ``item_feature_embedding``, ``genre_embedding``,
    ``tower_{k}_kernel`` / ``tower_{k}_bias`` for each hidden layer (ReLU) and
    the linear output layer.
    """

    def __init__(
        self,
        owner: MetaModel,
        prefix: str,
        item_vocab_sizes: Sequence[int],
        num_genres: int,
        dim: int,
        hidden_units: Sequence[int],
        seed: int | None,
        seed_offset: int = 20,
    ):
        if not item_vocab_sizes and not num_genres:
            raise ValueError(f"{type(owner).__name__} needs item content: item_vocab_sizes or num_genres.")
        self.prefix = prefix
        self.dim = int(dim)
        self.has_fields = bool(item_vocab_sizes)
        self.num_genres = int(num_genres)
        self.depth = len(hidden_units)
        self.offsets = np.cumsum([0, *list(item_vocab_sizes)[:-1]]).astype("int32")
        self.names, width = add_content_embeddings(owner, prefix, item_vocab_sizes, num_genres, dim, seed, seed_offset)
        self.names += F.add_mlp(owner, f"{prefix}tower", width, [*hidden_units, dim + 1], seed, seed_offset + 2)

    def state(self, params: Params, features: Features, model: str) -> tf.Tensor:
        """``[v_i, b_i]`` of every row: ``[..., dim + 1]``."""
        p = self.prefix
        x = item_content(params, features, p, self.offsets, self.has_fields, self.num_genres, model)
        return F.mlp(x, params, f"{p}tower", self.depth + 1)


@keras.saving.register_keras_serializable(package="tfmetarec")
class ContentModel(BilinearModel):
    """Content-based rating model (model name ``"content"``).

    ``r(u, i) = <u, v_i> + b_u + b_i + mu``: ``[v_i, b_i]`` comes from the
    :class:`ItemTower` over the item's content, ``[u, b_u]`` is a user
    preference over that content space (:class:`~tfmetarec.models.cf.UserSide`:
    a meta-learned prior, shifted by a linear map of the user's features and,
    with ``use_ids``, a residual per known user).

    Parameter groups: ``"user"`` (= ``"decision"``, the learners' default: the
    prior preference vector, bias and user-feature kernel), ``"user_prior"``,
    ``"item_tower"`` (content embeddings and MLP), ``"all"``.

    The user-state hooks use ``[u, b_u]`` as the user state and ``[v_i, b_i]``
    as the item representation, so the metric and task-encoder learners work.

    Args:
        user_vocab_sizes, item_vocab_sizes, num_genres: feature vocabularies (index 0 = OOV).
        embedding_dim: width of the content embeddings and of the preference space.
        hidden_units: hidden ReLU layers of the item tower.
        num_users: user ID vocabulary size (used with ``use_ids``).
        num_items: item ID vocabulary size (unused: items are scored from content;
            kept for the exporters).
        use_ids: a per-known-user residual preference (new users use the prior).
        user_features: add a linear map of the user's features to the prior.
        output_bias: initial global mean ``mu``.
        seed: initialiser seed.
    """

    item_group = "item_tower"

    def __init__(
        self,
        user_vocab_sizes: Sequence[int] = (),
        item_vocab_sizes: Sequence[int] = (),
        num_genres: int = 0,
        embedding_dim: int = 32,
        hidden_units: Sequence[int] = (64,),
        num_users: int = 1,
        num_items: int = 1,
        use_ids: bool = False,
        user_features: bool = True,
        output_bias: float = 3.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if self.embedding_dim < 1 or self.num_users < 1:
            raise ValueError("embedding_dim and num_users must be >= 1.")
        self.user_side = UserSide(self, "", self.user_vocab_sizes, self.embedding_dim, self.num_users,
                                  self.user_features, self.use_ids, seed)
        self.item_side = ItemTower(self, "", self.item_vocab_sizes, self.num_genres, self.embedding_dim,
                                    self.hidden_units, seed)
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="global_bias")
        self.built = True
