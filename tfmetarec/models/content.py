"""Content-based preference model: an item tower over item content and an adapted user vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import BilinearModel, UserSide
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.options import AtLeast
from tfmetarec.types import Features, FieldSpec, Params


class ItemTower:
    """``[v_i, b_i] = MLP(fields(i))`` of width ``dim + 1`` from item content only
    (one embedding per item field; no item ID), so a new item is scored exactly like
    a known one with the same content.

    Weights (under ``prefix``): ``item_{field}_embedding`` per item field,
    ``tower_{k}_kernel`` / ``tower_{k}_bias`` for each hidden layer (ReLU) and the
    linear output layer.
    """

    def __init__(
        self,
        owner: MetaModel,
        prefix: str,
        item_fields: Sequence[FieldSpec],
        dim: int,
        hidden_units: Sequence[int],
        seed: int | None,
        seed_offset: int = 20,
        field_dims: Mapping[str, int] | None = None,
        pooling: str = "mean",
    ):
        if not item_fields:
            raise ValueError(f"{type(owner).__name__} needs item content: some item_fields.")
        self.prefix = prefix
        self.dim = int(dim)
        self.depth = len(hidden_units)
        self.adapt_names: list[str] = []  # an item task has no per-item prior to adapt here
        self.content = FieldEmbeddings(owner, f"{prefix}item_", item_fields, dim, field_dims, pooling, seed,
                                       seed_offset)
        self.names = list(self.content.names)
        self.names += F.add_mlp(owner, f"{prefix}tower", self.content.width, [*hidden_units, dim + 1], seed,
                                seed_offset + 2)

    def state(self, params: Params, features: Features, model: MetaModel) -> tf.Tensor:
        """``[v_i, b_i]`` of every row: ``[..., dim + 1]``."""
        x = self.content(params, model.item_field_indices(features))
        return F.mlp(x, params, f"{self.prefix}tower", self.depth + 1)


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
        hidden_units: hidden ReLU layers of the item tower.
        user_features: add a linear map of the user's fields to the prior.
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel`
            (``embedding_dim`` is also the width of the preference space; ``use_ids``
            gives a per-known-user residual preference; item IDs are unused: items are
            scored from content).
    """

    item_group = "item_tower"

    def __init__(self, hidden_units: Annotated[Sequence[int], AtLeast(1)] = (64,), user_features: bool = True,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        d, seed, dims, pooling = self.embedding_dim, self.seed, self.field_dims, self.list_pooling
        self.user_side = UserSide(self, "", self.user_field_specs, d, self.num_users, self.user_features,
                                  self.use_ids, seed, dims, pooling)
        self.item_side = ItemTower(self, "", self.item_field_specs, d, self.hidden_units, seed, field_dims=dims,
                                   pooling=pooling)
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="global_bias")
        self.built = True
