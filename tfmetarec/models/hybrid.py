"""A learned blend of collaborative filtering and content-based scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import CFItemSide, UserSide, bilinear_score, per_task, rows_shape
from tfmetarec.models.content import ItemTower
from tfmetarec.options import Above, AtLeast, Below
from tfmetarec.types import ITEM_FIELDS, ITEM_ID, USER_FIELDS, USER_ID, Features, Params

SUPPORT_COUNT = "support_count"
"""Optional feature key: the number of support ratings of the task, ``[T]`` (one per
task) or one value per row (same shape as ``user_id``). Read by ``alpha_mode="support_size"``."""

def with_support_count(features: Features, support_mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """``features`` plus :data:`SUPPORT_COUNT` = the real rows of each task's support
    (``support_mask [T, S]``), for scoring a query with a support-size-aware :class:`Hybrid`."""
    mask = tf.convert_to_tensor(support_mask)
    return {**features, SUPPORT_COUNT: tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)}


def _row_rank(features: Features) -> int:
    """Number of leading row axes (1 for ``[N]``, 2 for ``[T, N]``) of a feature batch."""
    for key in (USER_ID, ITEM_ID):
        if key in features:
            return len(features[key].shape)
    for key in (USER_FIELDS, ITEM_FIELDS):
        if key in features:
            return len(features[key].shape) - 1
    raise KeyError("An empty feature batch.")


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


@keras.saving.register_keras_serializable(package="tfmetarec")
class Hybrid(MetaModel):
    """``r = alpha * r_CF + (1 - alpha) * r_CB`` (model name ``"hybrid"``).

    ``r_CF`` is a biased factorisation (weights prefixed ``cf_``, as in
    :class:`~tfmetarec.models.cf.BiasedMF`) and ``r_CB`` a content model
    (prefixed ``cb_``, as in :class:`~tfmetarec.models.content.ContentModel`);
    each has its own meta-learned user prior and global mean ``cf_global_bias``
    / ``cb_global_bias``.

    The blend weight ``alpha`` is learned:

    * ``alpha_mode="global"``: ``alpha = sigmoid(alpha_logit)``, one scalar.
    * ``alpha_mode="support_size"`` (the default): ``alpha = sigmoid(alpha_logit +
      alpha_slope * log(1 + n))`` where ``n`` is the task's support size. The
      count is data about the task, not a parameter: :meth:`task_context` reads it
      from the support mask, the gradient learners (MAML family, Reptile,
      fine-tuning) carry it in the adapted state under :data:`SUPPORT_COUNT`, and
      ``forward`` reads it from the parameters or, failing that, from the
      features (see :func:`with_support_count`). Without it ``n = 0``: the global
      ``sigmoid(alpha_logit)``. ``alpha_slope`` is meta-learned, so the data
      decide whether a user with 2 ratings leans on content and one with 50 on CF.

    Parameter groups: ``"user"`` (= ``"decision"``): both user priors and
    user-feature kernels; ``"cf_user"``, ``"cb_user"``; ``"item"`` (CF item side
    and content tower); ``"alpha"``; ``"all"``. The user state of the hooks is
    ``[p_u, b_u, u, b'_u]`` (CF then content), the item representation the two
    item states concatenated; the metric and task-encoder learners score through
    those hooks without a support count, so for them the blend is the global ``alpha``.

    Args:
        hidden_units: hidden ReLU layers of the content tower.
        user_features, item_content: as in :class:`~tfmetarec.models.cf.BiasedMF`.
        alpha_mode: ``"global"`` or ``"support_size"`` (above).
        alpha_init: initial ``alpha`` with no support.
        alpha_slope_init: initial ``alpha_slope``.
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel`.
    """

    def __init__(
        self,
        hidden_units: Annotated[Sequence[int], AtLeast(1)] = (64,),
        user_features: bool = True,
        item_content: bool = True,
        alpha_mode: Literal["global", "support_size"] = "support_size",
        alpha_init: Annotated[float, Above(0), Below(1)] = 0.5,
        alpha_slope_init: float = 0.25,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        d, seed = self.embedding_dim, self.seed
        cb_seed = None if seed is None else seed + 100
        users, items, dims, pool = self.user_field_specs, self.item_field_specs, self.field_dims, self.list_pooling
        self.cf_user = UserSide(self, "cf_", users, d, self.num_users, self.user_features, self.use_ids, seed, dims,
                                pool)
        self.cf_item = CFItemSide(self, "cf_", items, d, self.num_items, self.item_content, seed, dims, pool)
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="cf_global_bias")
        self.cb_user = UserSide(self, "cb_", users, d, self.num_users, self.user_features, self.use_ids, cb_seed,
                                dims, pool)
        self.cb_item = ItemTower(self, "cb_", items, d, self.hidden_units, cb_seed, field_dims=dims, pooling=pool)
        self.add_weight(shape=(), initializer=keras.initializers.Constant(self.output_bias), name="cb_global_bias")
        self.add_weight(shape=(), initializer=keras.initializers.Constant(_logit(self.alpha_init)), name="alpha_logit")
        self._alpha_names = ["alpha_logit"]
        if self.alpha_mode == "support_size":
            self.add_weight(shape=(), initializer=keras.initializers.Constant(self.alpha_slope_init),
                            name="alpha_slope")
            self._alpha_names.append("alpha_slope")
        self.built = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        cf_user, cb_user = tuple(self.cf_user.adapt_names), tuple(self.cb_user.adapt_names)
        return {
            "all": tuple(self.parameters()),
            "user": cf_user + cb_user,
            "decision": cf_user + cb_user,
            "cf_user": cf_user,
            "cb_user": cb_user,
            "item": tuple(self.cf_item.names) + tuple(self.cb_item.names),
            "alpha": tuple(self._alpha_names),
        }

    def alpha(self, params: Params, features: Features) -> tf.Tensor:
        """The blend weight of the CF score for every row: ``[...]``."""
        rows = rows_shape(features)
        logit = per_task(params["alpha_logit"], 0)
        count = params.get(SUPPORT_COUNT, features.get(SUPPORT_COUNT))
        if self.alpha_mode == "support_size" and count is not None:
            count = tf.cast(count, logit.dtype)
            if len(count.shape) + 1 == _row_rank(features):
                count = count[..., None]  # one count per task -> broadcast over its rows
            logit = logit + per_task(params["alpha_slope"], 0) * tf.math.log1p(tf.maximum(count, 0.0))
        return tf.broadcast_to(tf.sigmoid(logit), rows)

    def task_context(self, support: Features) -> dict[str, tf.Tensor]:
        """``{SUPPORT_COUNT: [T]}``, the real rows of each task's support (support_size mode)."""
        if self.alpha_mode != "support_size":
            return {}
        return {SUPPORT_COUNT: tf.reduce_sum(tf.cast(support["mask"], tf.float32), axis=-1)}

    def task_context_keys(self) -> tuple[str, ...]:
        return (SUPPORT_COUNT,) if self.alpha_mode == "support_size" else ()

    def _blend(self, params: Params, features: Features, cf_user, cb_user, cf_item, cb_item) -> tf.Tensor:
        cf = bilinear_score(cf_user, cf_item, params["cf_global_bias"])
        cb = bilinear_score(cb_user, cb_item, params["cb_global_bias"])
        a = tf.cast(self.alpha(params, features), cf.dtype)
        return self.with_item_offset(a * cf + (1.0 - a) * cb, features)

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        return self._blend(
            params, features,
            self.cf_user.state(params, features, self), self.cb_user.state(params, features, self),
            self.cf_item.state(params, features, self), self.cb_item.state(params, features, self),
        )

    # -- user-state hooks: [cf user state, content user state] --------------------------
    @property
    def user_state_dim(self) -> int:
        return 2 * (self.embedding_dim + 1)

    @property
    def item_dim(self) -> int:
        return 2 * (self.embedding_dim + 1)

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        return tf.concat([self.cf_user.state(params, features, self),
                          self.cb_user.state(params, features, self)], axis=-1)

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        return tf.concat([self.cf_item.state(params, features, self),
                          self.cb_item.state(params, features, self)], axis=-1)

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        w = self.embedding_dim + 1
        cf_item = self.cf_item.state(params, features, self)
        cb_item = self.cb_item.state(params, features, self)
        users = tf.broadcast_to(user_state[:, None, :],
                                tf.concat([tf.shape(cf_item)[:-1], tf.shape(user_state)[-1:]], axis=0))
        cf_user, cb_user = tf.split(users, [w, w], axis=-1)  # not a slice: see cf.bilinear_score
        return self._blend(params, features, cf_user, cb_user, cf_item, cb_item)
