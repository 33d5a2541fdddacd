"""Biased matrix factorisation with meta-learned user and item priors.

``r(u, i) = <p_u, q_i> + b_u + b_i + mu``. In a cold-start task the user is
new (ID 0, the out-of-vocabulary bucket), so what a learner adapts is the
*prior* user: a meta-learned vector and bias, optionally shifted by a linear
map of the user's field embeddings. A new item (ID index 0) likewise gets a
learned prior vector and bias, optionally shifted by a linear map of its
content (its item fields, from the model's item table).

The building blocks here (:class:`UserSide`, :class:`CFItemSide`) create their
weights on an owning :class:`~tfmetarec.models.base.MetaModel` under a name
prefix, so :class:`~tfmetarec.models.hybrid.Hybrid` can hold two of them.
Every block is a pure function of the parameter mapping and accepts per-task
parameters (a leading task axis ``T``) like the ops of
:mod:`tfmetarec.models.functional`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel, check_features
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.types import ITEM_FIELDS, ITEM_ID, USER_FIELDS, USER_ID, Features, FieldSpec, Params


def _seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else int(seed) + offset


def _normal(seed: int | None, offset: int, stddev: float = 0.1) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=stddev, seed=_seed(seed, offset))


def _small_glorot(seed: int | None, offset: int, scale: float = 0.1) -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(scale, "fan_avg", "uniform", seed=_seed(seed, offset))


def rows_shape(features: Features) -> tf.Tensor:
    """The leading ``[...]`` (``[N]`` or ``[T, N]``) shape of a feature batch."""
    for key in (USER_ID, ITEM_ID):
        if key in features:
            return tf.shape(features[key])
    for key in (USER_FIELDS, ITEM_FIELDS):
        if key in features:
            return tf.shape(features[key])[:-1]
    raise KeyError(f"An empty feature batch; expected some of {[USER_ID, ITEM_ID, USER_FIELDS]}.")


def per_task(value: tf.Tensor, base_rank: int) -> tf.Tensor:
    """A parameter ready to broadcast over rows: a per-task copy ``[T, ...]`` (one
    axis more than ``base_rank``) gets a row axis ``[T, 1, ...]``; a shared one is kept."""
    if len(value.shape) == base_rank + 1:
        return tf.expand_dims(value, 1)
    return value


def vector_and_bias(factors: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """``[..., d]`` and ``[...]`` -> ``[..., d + 1]`` (a per-task pair stays per task)."""
    return tf.concat([factors, bias[..., None]], axis=-1)


def bilinear_score(user: tf.Tensor, item: tf.Tensor, global_bias: tf.Tensor) -> tf.Tensor:
    """``<p, q> + b_u + b_i + mu`` from ``user = [p, b_u]`` and ``item = [q, b_i]`` (``[..., d + 1]``)."""
    d = user.shape[-1] - 1
    if item.shape[-1] != d + 1:
        raise ValueError(f"User state width {d + 1} and item state width {item.shape[-1]} differ.")
    # split/squeeze rather than slicing: their gradients lower to ONNX (a partial
    # slice's gradient, StridedSliceGrad, has no general lowering)
    p, b_u = tf.split(user, [d, 1], axis=-1)
    q, b_i = tf.split(item, [d, 1], axis=-1)
    dot = tf.reduce_sum(p * q, axis=-1)
    return dot + tf.squeeze(b_u, -1) + tf.squeeze(b_i, -1) + per_task(global_bias, 0)


def id_mask(ids: tf.Tensor, dtype) -> tf.Tensor:
    """1 for an in-vocabulary ID, 0 for the out-of-vocabulary index 0: ``[..., 1]``."""
    return tf.cast(ids > 0, dtype)[..., None]


class UserSide:
    """The user half of a factorisation model, ``[p_u, b_u]`` of width ``dim + 1``:

    ``prior + W · fields(user) + [u > 0] · [P[u], B[u]]``

    * ``{prefix}user_prior_factors [dim]`` and ``{prefix}user_prior_bias []``: the
      meta-learned prior user (all a new user, ID 0 without features, gets);
    * with ``use_features``: one embedding per user field
      (``{prefix}user_{field}_embedding``) and ``{prefix}user_feature_kernel
      [width, dim + 1]``, a linear map of the user's fields added to the prior;
    * with ``use_ids``: ``{prefix}user_id_factors [num_users, dim]`` and
      ``{prefix}user_id_bias [num_users]``, a per-user residual for known users
      (row 0, the out-of-vocabulary bucket, is masked out and never used).

    :attr:`adapt_names` (prior factors, prior bias and the feature kernel) are
    what a learner adapts per task: for one user they move ``[p_u, b_u]``.
    """

    def __init__(
        self,
        owner: MetaModel,
        prefix: str,
        user_fields: Sequence[FieldSpec],
        dim: int,
        num_users: int,
        use_features: bool,
        use_ids: bool,
        seed: int | None,
        field_dims: Mapping[str, int] | None = None,
        pooling: str = "mean",
    ):
        self.prefix = prefix
        self.dim = int(dim)
        self.use_features = bool(use_features) and bool(user_fields)
        self.use_ids = bool(use_ids)
        p = prefix
        owner.add_weight(shape=(dim,), initializer=_normal(seed, 0), name=f"{p}user_prior_factors")
        owner.add_weight(shape=(), initializer="zeros", name=f"{p}user_prior_bias")
        self.adapt_names = [f"{p}user_prior_factors", f"{p}user_prior_bias"]
        self.names = list(self.adapt_names)
        self.embeddings = None
        if self.use_features:
            self.embeddings = FieldEmbeddings(owner, f"{p}user_", user_fields, dim, field_dims, pooling, seed, 1)
            owner.add_weight(shape=(self.embeddings.width, dim + 1), initializer=_small_glorot(seed, 2),
                             name=f"{p}user_feature_kernel")
            self.adapt_names.append(f"{p}user_feature_kernel")
            self.names += [*self.embeddings.names, f"{p}user_feature_kernel"]
        if self.use_ids:
            owner.add_weight(shape=(num_users, dim), initializer=_normal(seed, 3), name=f"{p}user_id_factors")
            owner.add_weight(shape=(num_users,), initializer="zeros", name=f"{p}user_id_bias")
            self.names += [f"{p}user_id_factors", f"{p}user_id_bias"]

    @property
    def state_dim(self) -> int:
        return self.dim + 1

    def state(self, params: Params, features: Features, model: MetaModel) -> tf.Tensor:
        """``[p_u, b_u]`` of every row: ``[..., dim + 1]``."""
        p = self.prefix
        name = type(model).__name__
        prior = vector_and_bias(params[f"{p}user_prior_factors"], params[f"{p}user_prior_bias"])
        rows = rows_shape(features)
        state = tf.broadcast_to(per_task(prior, 1), tf.concat([rows, [self.dim + 1]], axis=0))
        if self.embeddings is not None:
            check_features(features, [USER_FIELDS], name)
            emb = self.embeddings(params, features[USER_FIELDS])
            state = state + F.dense(emb, params[f"{p}user_feature_kernel"])
        if self.use_ids:
            check_features(features, [USER_ID], name)
            ids = features[USER_ID]
            factors = F.embed(params[f"{p}user_id_factors"], ids)
            bias = F.embed(params[f"{p}user_id_bias"][..., None], ids)
            state = state + id_mask(ids, state.dtype) * tf.concat([factors, bias], axis=-1)
        return state


class CFItemSide:
    """The item half of the factorisation, ``[q_i, b_i]`` of width ``dim + 1``:

    ``prior + C · content(i) + [i known] · [Q[i], B[i]]``

    * ``{prefix}item_prior_factors [dim]``, ``{prefix}item_prior_bias []``: the
      learned prior item (what a new item, ID index 0, starts from);
    * with ``use_content`` (and some item fields): one embedding per item field
      (``{prefix}item_{field}_embedding``) and ``{prefix}item_content_kernel [width, dim + 1]``;
    * ``{prefix}item_id_factors [num_items, dim]``, ``{prefix}item_id_bias [num_items]``:
      the per-item residuals of the training items (row 0 masked out).
    """

    def __init__(
        self,
        owner: MetaModel,
        prefix: str,
        item_fields: Sequence[FieldSpec],
        dim: int,
        num_items: int,
        use_content: bool,
        seed: int | None,
        field_dims: Mapping[str, int] | None = None,
        pooling: str = "mean",
    ):
        self.prefix = prefix
        self.dim = int(dim)
        self.use_content = bool(use_content) and bool(item_fields)
        p = prefix
        owner.add_weight(shape=(dim,), initializer=_normal(seed, 10), name=f"{p}item_prior_factors")
        owner.add_weight(shape=(), initializer="zeros", name=f"{p}item_prior_bias")
        self.names = [f"{p}item_prior_factors", f"{p}item_prior_bias"]
        self.content = None
        if self.use_content:
            self.content = FieldEmbeddings(owner, f"{p}item_", item_fields, dim, field_dims, pooling, seed, 11)
            owner.add_weight(shape=(self.content.width, dim + 1), initializer=_small_glorot(seed, 13),
                             name=f"{p}item_content_kernel")
            self.names += [*self.content.names, f"{p}item_content_kernel"]
        # what an item task adapts: for one new item these move its [q_i, b_i]
        self.adapt_names = [n for n in self.names if n.endswith(("item_prior_factors", "item_prior_bias",
                                                                 "item_content_kernel"))]
        owner.add_weight(shape=(num_items, dim), initializer=_normal(seed, 14), name=f"{p}item_id_factors")
        owner.add_weight(shape=(num_items,), initializer="zeros", name=f"{p}item_id_bias")
        self.names += [f"{p}item_id_factors", f"{p}item_id_bias"]

    def state(self, params: Params, features: Features, model: MetaModel) -> tf.Tensor:
        """``[q_i, b_i]`` of every row: ``[..., dim + 1]``."""
        p = self.prefix
        ids = model.item_id_index(features)
        prior = vector_and_bias(params[f"{p}item_prior_factors"], params[f"{p}item_prior_bias"])
        state = tf.broadcast_to(per_task(prior, 1), tf.concat([tf.shape(ids), [self.dim + 1]], axis=0))
        if self.content is not None:
            content = self.content(params, model.item_field_indices(features))
            state = state + F.dense(content, params[f"{p}item_content_kernel"])
        factors = F.embed(params[f"{p}item_id_factors"], ids)
        bias = F.embed(params[f"{p}item_id_bias"][..., None], ids)
        return state + id_mask(ids, state.dtype) * tf.concat([factors, bias], axis=-1)


def broadcast_user_state(user_state: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A per-task user state ``[T, D]`` broadcast over the rows of ``like [T, N, ...]``."""
    return tf.broadcast_to(user_state[:, None, :], tf.concat([tf.shape(like)[:-1], tf.shape(user_state)[-1:]], 0))


class VectorAndBias:
    """A model whose user state and item representation are ``[vector, bias]`` of width
    ``embedding_dim + 1`` each."""

    @property
    def user_state_dim(self) -> int:
        return self.embedding_dim + 1

    @property
    def item_dim(self) -> int:
        return self.embedding_dim + 1


class BilinearModel(VectorAndBias, MetaModel):
    """Shared body of the models that score ``<p_u, q_i> + b_u + b_i + mu`` from a
    :class:`UserSide` (``self.user_side``) and an item block (``self.item_side``:
    anything with ``state(params, features, model)`` and ``names``), with a scalar
    ``global_bias``. The user state of the hooks is ``[p_u, b_u]``, the item
    representation ``[q_i, b_i]``; ``item_group`` names the item block's group."""

    item_group = "item"

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        user = tuple(self.user_side.adapt_names)
        return {
            "all": tuple(self.parameters()),
            "user": user,
            "decision": user,
            "user_prior": user[:2],
            self.item_group: tuple(self.item_side.names),
            **({"item_prior": tuple(self.item_side.adapt_names)} if self.item_side.adapt_names else {}),
        }

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        return self.user_side.state(params, features, self)

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        return self.item_side.state(params, features, self)

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        user = self.user_representation(params, features)
        item = self.item_representation(params, features)
        return self.with_item_offset(bilinear_score(user, item, params["global_bias"]), features)

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        item = self.item_representation(params, features)
        scores = bilinear_score(broadcast_user_state(user_state, item), item, params["global_bias"])
        return self.with_item_offset(scores, features)


@keras.saving.register_keras_serializable(package="tfmetarec")
class BiasedMF(BilinearModel):
    """Biased matrix factorisation for cold-start meta-learning (model name ``"cf"``).

    ``r(u, i) = <p_u, q_i> + b_u + b_i + mu`` with ``[p_u, b_u]`` from
    :class:`UserSide` and ``[q_i, b_i]`` from :class:`CFItemSide`.

    Parameter groups:

    * ``"user"`` (also ``"decision"``, the learners' default): the prior user
      factors and bias and the user-feature kernel. Adapting it on a task's
      support fits that user's ``[p_u, b_u]``; the meta-learned values are the
      prior a brand-new user starts from.
    * ``"user_prior"``: only the prior user factors and bias.
    * ``"item"``: everything on the item side (priors, content map, ID tables).
    * ``"item_prior"``: the prior item vector and bias and the content kernel: what an
      *item* task (tasks grouped by item, ``task_key="item"``) adapts, fitting a new
      item's ``[q_i, b_i]`` to its first ratings.
    * ``"all"``.

    Args:
        user_features: add a linear map of the user's field embeddings to the prior.
        item_content: add a linear map of the item's field embeddings to the item
            prior (so a new item starts from its content, not one shared vector).
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel`
            (``embedding_dim`` is the width ``d`` of the factors and of the field
            embeddings; item IDs are always used, ``use_ids`` also gives every known user
            its own residual factors and bias; new users, ID 0, use the prior only).
    """

    def __init__(self, user_features: bool = True, item_content: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        d, seed, dims, pooling = self.embedding_dim, self.seed, self.field_dims, self.list_pooling
        self.user_side = UserSide(self, "", self.user_field_specs, d, self.num_users, self.user_features,
                                  self.use_ids, seed, dims, pooling)
        self.item_side = CFItemSide(self, "", self.item_field_specs, d, self.num_items, self.item_content, seed,
                                    dims, pooling)
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="global_bias")
        self.built = True
