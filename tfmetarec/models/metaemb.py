"""Meta-Embedding: generated initial ID embeddings for new items (Pan et al., SIGIR 2019).

A rating model that embeds item IDs has nothing to say about a new item (ID 0,
the out-of-vocabulary bucket) except one shared OOV embedding. Meta-Embedding
replaces it with a *generator* that maps the item's content to an initial ID
embedding, trained with two phases per item task:

* cold phase: the loss ``l_a`` of the base model on a first batch ``a`` of the
  item's ratings, with the generated embedding ``phi``;
* warm phase: one gradient step on the embedding, ``phi' = phi - warm_lr * dl_a/dphi``,
  then the loss ``l_b`` on a second batch ``b``;

and minimises ``cold_weight * l_a + (1 - cold_weight) * l_b`` over the generator's
weights only (the base model is pre-trained and kept fixed).

Why a dedicated trainer: the library's meta-learners sample *user* tasks
(support and query = one user's ratings) and adapt model parameters, while
Meta-Embedding's tasks are *items* (rows = ratings of one item by many users)
and it adapts a per-item embedding that is an *output* of the generator, not a
parameter. :class:`MetaEmbeddingTrainer` implements that objective on item
tasks from :func:`item_task_batches`. :class:`MetaEmb` is nevertheless a full
:class:`~tfmetarec.models.base.MetaModel`: its forward uses the generator for
item ID 0, so every learner (user cold start with the gradient learners, the
metric and task-encoder learners through its user-state hooks) runs on it
and can meta-train the generator along with the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import MetaModel, check_features
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.types import (
    ITEM_ID,
    MASK,
    RATING,
    USER_FIELDS,
    USER_ID,
    Features,
    FieldSpec,
    Params,
    features_of,
)


@keras.saving.register_keras_serializable(package="tfmetarec")
class MetaEmb(MetaModel):
    """A MeLU-style model with item ID embeddings whose OOV item embedding is generated
    from the item's content (model name ``"metaemb"``).

    Inputs per row: user field embeddings (+ user ID embedding with ``use_ids``),
    item field embeddings and the item ID embedding, concatenated through the
    decision MLP. For an item outside the ID vocabulary (ID index 0: a new item)
    the ID embedding is ``generator(content)`` (content = the item field
    embeddings), otherwise the learned row of ``item_id_embedding`` (whose row 0
    is never used).

    Parameter groups: ``"decision"`` (the MLP; the learners' default),
    ``"head"``, ``"generator"``, ``"embeddings"`` (field and ID tables),
    ``"all"``.

    Args:
        user_fields, item_fields: the user and item fields; some item field is
            required by the generator.
        embedding_dim: width of every embedding (the generated one included).
        field_dims: per-field embedding widths, by field name.
        hidden_units: decision MLP widths before the rating output.
        num_users: user ID vocabulary size (used with ``use_ids``).
        num_items: item ID vocabulary size (item IDs are always embedded).
        use_ids: also embed user IDs.
        generator_units: hidden ReLU layers of the generator (empty: linear map).
        list_pooling: ``"mean"`` or ``"sum"`` over a list field's values.
        output_bias: initial output bias.
        seed: initialiser seed.
    """

    def __init__(
        self,
        user_fields: Sequence[FieldSpec] = (),
        item_fields: Sequence[FieldSpec] = (),
        embedding_dim: int = 32,
        field_dims: Mapping[str, int] | None = None,
        hidden_units: Sequence[int] = (64, 64),
        num_users: int = 1,
        num_items: int = 1,
        use_ids: bool = False,
        generator_units: Sequence[int] = (),
        list_pooling: str = "mean",
        output_bias: float = 3.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not item_fields:
            raise ValueError("MetaEmb generates item embeddings from item content: it needs item_fields.")
        e = self.embedding_dim

        def seed_at(i: int) -> int | None:
            return None if seed is None else seed + i

        self.user_embeddings = FieldEmbeddings(self, "user_", self.user_field_specs, e, field_dims, list_pooling,
                                               seed, 0)
        user_width = self.user_embeddings.width
        if self.use_ids:
            self.add_weight(shape=(self.num_users, e), initializer=keras.initializers.RandomNormal(
                stddev=0.1, seed=seed_at(1)), name="user_id_embedding")
            user_width += e
        self.item_embeddings = FieldEmbeddings(self, "item_", self.item_field_specs, e, field_dims, list_pooling,
                                               seed, 50)
        content_width = self.item_embeddings.width
        self.add_weight(shape=(self.num_items, e), initializer=keras.initializers.RandomNormal(
            stddev=0.1, seed=seed_at(4)), name="item_id_embedding")
        self._generator = F.add_mlp(self, "generator", content_width, [*self.generator_units, e], seed, 10)
        self._decision = F.add_mlp(self, "decision", user_width + content_width + e, [*self.hidden_units, 1], seed,
                                   20, self.output_bias)
        self.built = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        names = tuple(self.parameters())
        n = len(self.hidden_units)
        return {
            "all": names,
            "decision": tuple(self._decision),
            "head": (f"decision_{n}_kernel", f"decision_{n}_bias"),
            "generator": tuple(self._generator),
            "embeddings": tuple(x for x in names if x not in self._decision and x not in self._generator),
        }

    # -- pieces -----------------------------------------------------------------------
    def item_content(self, params: Params, features: Features) -> tf.Tensor:
        """The item field embeddings side by side: ``[..., content width]``."""
        return self.item_embeddings(params, self.item_field_indices(features))

    def generate(self, params: Params, content: tf.Tensor) -> tf.Tensor:
        """The generated ID embedding ``[..., embedding_dim]`` from item content."""
        return F.mlp(content, params, "generator", len(self.generator_units) + 1)

    def generate_item_embedding(self, params: Params, features: Features) -> tf.Tensor:
        """The generated ID embedding of every row's item: ``[..., embedding_dim]``."""
        return self.generate(params, self.item_content(params, features))

    def _item_id_embedding(self, params: Params, features: Features, content: tf.Tensor) -> tf.Tensor:
        ids = self.item_id_index(features)
        learned = F.embed(params["item_id_embedding"], ids)
        known = tf.cast(ids > 0, learned.dtype)[..., None]
        return known * learned + (1.0 - known) * self.generate(params, content)

    def _user_part(self, params: Params, features: Features) -> tf.Tensor | None:
        parts = []
        if self.user_embeddings:
            check_features(features, [USER_FIELDS], "MetaEmb")
            parts.append(self.user_embeddings(params, features[USER_FIELDS]))
        if self.use_ids:
            check_features(features, [USER_ID], "MetaEmb")
            parts.append(F.embed(params["user_id_embedding"], features[USER_ID]))
        return tf.concat(parts, axis=-1) if parts else None

    def _decide(self, params: Params, x: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(F.mlp(x, params, "decision", len(self.hidden_units) + 1), axis=-1)

    def _score(self, params: Params, features: Features, users: tf.Tensor | None, items: tf.Tensor) -> tf.Tensor:
        return self._decide(params, items if users is None else tf.concat([users, items], axis=-1))

    # -- MetaModel --------------------------------------------------------------------
    def forward(self, params: Params, features: Features) -> tf.Tensor:
        return self._score(params, features, self._user_part(params, features),
                           self.item_representation(params, features))

    def forward_with_item_embedding(self, params: Params, item_embedding: tf.Tensor, features: Features) -> tf.Tensor:
        """Scores ``[T, N]`` with every row's item ID embedding replaced by the task's
        ``item_embedding [T, embedding_dim]`` (one item per task, as in item cold start)."""
        content = self.item_content(params, features)
        ids = tf.broadcast_to(tf.cast(item_embedding, content.dtype)[:, None, :],
                              tf.concat([tf.shape(content)[:-1], [self.embedding_dim]], axis=0))
        items = tf.concat([content, ids], axis=-1)
        return self._score(params, features, self._user_part(params, features), items)

    @property
    def user_state_dim(self) -> int | None:
        width = self.user_embeddings.width + int(self.use_ids) * self.embedding_dim
        return width or None

    @property
    def item_dim(self) -> int:
        return self.item_embeddings.width + self.embedding_dim

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        users = self._user_part(params, features)
        if users is None:
            raise ValueError("This MetaEmb has no user inputs (no user fields, use_ids=False): no user representation.")
        return users

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        content = self.item_content(params, features)
        return tf.concat([content, self._item_id_embedding(params, features, content)], axis=-1)

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        items = self.item_representation(params, features)
        users = tf.broadcast_to(user_state[:, None, :],
                                tf.concat([tf.shape(items)[:-1], tf.shape(user_state)[-1:]], axis=0))
        return self._score(params, features, users, items)


# -- the two-phase Meta-Embedding objective on item tasks --------------------------------------
def _masked_mse(pred: tf.Tensor, part: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Mean squared error per task ``[T]`` over the real rows."""
    mask = tf.cast(part[MASK], pred.dtype)
    err = tf.square(pred - tf.cast(part[RATING], pred.dtype)) * mask
    return tf.reduce_sum(err, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


def meta_embedding_losses(
    model: MetaEmb,
    params: Params,
    cold: Mapping[str, tf.Tensor],
    warm: Mapping[str, tf.Tensor],
    warm_lr: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-task cold-phase and warm-phase losses ``([T], [T])`` of item tasks.

    ``cold`` and ``warm`` are padded parts (features, rating, mask) ``[T, K, ...]``
    whose task ``t`` holds ratings of one item; the item's embedding is generated
    from the content of its first ``cold`` row.
    """
    features_a, features_b = features_of(cold), features_of(warm)
    phi = model.generate_item_embedding(params, features_a)[:, 0, :]  # [T, e]: one item per task
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(phi)
        loss_a = _masked_mse(model.forward_with_item_embedding(params, phi, features_a), cold)
        total_a = tf.reduce_sum(loss_a)
    grad = tape.gradient(total_a, phi)  # each task's own gradient (tasks are independent)
    warmed = phi - tf.cast(warm_lr, phi.dtype) * grad
    loss_b = _masked_mse(model.forward_with_item_embedding(params, warmed, features_b), warm)
    return loss_a, loss_b


class MetaEmbeddingTrainer:
    """Trains a :class:`MetaEmb`'s generator with the two-phase objective.

    The base model (embeddings and decision MLP) should be trained first (e.g.
    by any learner or plain regression on the known items' ratings); only the
    ``"generator"`` group is updated here.

    Args:
        model: the MetaEmb whose generator is trained.
        optimizer: a Keras optimizer (e.g. ``keras.optimizers.Adam(1e-3)``).
        cold_weight: weight of the cold-phase loss (``alpha`` in the paper, 0.1 there).
        warm_lr: step size of the simulated warm-up step on the generated embedding
            (0.03 by default: on the MeLU-sized model, 0.1 overshoots and the warm-up
            step raises the error, see ``benchmarks/metaemb_item_cold.py``).
        jit_compile: XLA-compile the step.
    """

    def __init__(self, model: MetaEmb, optimizer: keras.optimizers.Optimizer, cold_weight: float = 0.1,
                 warm_lr: float = 0.03, jit_compile: bool = False):
        if not isinstance(model, MetaEmb):
            raise TypeError(f"MetaEmbeddingTrainer needs a MetaEmb model, got {type(model).__name__}.")
        if not 0.0 <= cold_weight <= 1.0 or warm_lr < 0:
            raise ValueError(f"cold_weight must lie in [0, 1] and warm_lr be >= 0; got {cold_weight}, {warm_lr}.")
        self.model = model
        self.optimizer = optimizer
        self.cold_weight = float(cold_weight)
        self.warm_lr = float(warm_lr)
        params = model.parameters()
        self.variables = [params[n] for n in model.param_groups()["generator"]]
        self.optimizer.build(self.variables)
        self._step = tf.function(self._train_step, jit_compile=jit_compile)

    def _train_step(self, cold: dict, warm: dict) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss_a, loss_b = meta_embedding_losses(self.model, self.model.variable_values(), cold, warm, self.warm_lr)
            loss_a, loss_b = tf.reduce_mean(loss_a), tf.reduce_mean(loss_b)
            loss = self.cold_weight * loss_a + (1.0 - self.cold_weight) * loss_b
        grads = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return {"loss": loss, "cold_loss": loss_a, "warm_loss": loss_b}

    def train_step(self, cold: Mapping[str, Any], warm: Mapping[str, Any]) -> dict[str, float]:
        """One update from a batch of item tasks; returns the losses."""
        cold, warm = ({k: tf.convert_to_tensor(v) for k, v in part.items()} for part in (cold, warm))
        logs = self._step(cold, warm)
        return {k: float(v) for k, v in logs.items()}

    def fit(self, batches: Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]], steps: int) -> dict[str, list[float]]:
        """``steps`` updates from an iterator of ``(cold, warm)`` batches (e.g. :func:`item_task_batches`)."""
        history: dict[str, list[float]] = {}
        for _ in range(steps):
            cold, warm = next(batches)
            for k, v in self.train_step(cold, warm).items():
                history.setdefault(k, []).append(v)
        return history


def item_task_batches(
    features: Mapping[str, np.ndarray],
    ratings: np.ndarray,
    rows_per_phase: int = 5,
    items_per_batch: int = 16,
    seed: int = 0,
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Endless ``(cold, warm)`` batches of item tasks from flat rating rows.

    ``features`` holds one row per rating (``item_id [R]``, ``user_fields [R, W]``,
    ...), ``ratings [R]``. Rows are grouped by ``item_id``; items with at least
    ``2 * rows_per_phase`` ratings (and ID > 0) are eligible. Each batch samples
    ``items_per_batch`` items and, per item, ``2 * rows_per_phase`` distinct
    ratings: the first half is the cold phase, the second the warm phase.
    """
    ids = np.asarray(features[ITEM_ID]).astype("int64")
    ratings = np.asarray(ratings, "float32")
    if ids.ndim != 1 or ratings.shape != ids.shape:
        raise ValueError(f"Flat rows expected: item_id {ids.shape} and ratings {ratings.shape} must be [R].")
    k = int(rows_per_phase)
    order = np.argsort(ids, kind="stable")
    unique, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    keep = (counts >= 2 * k) & (unique > 0)
    groups = [order[s:s + c] for s, c, ok in zip(starts, counts, keep) if ok]
    if not groups:
        raise ValueError(f"No item has {2 * k} ratings; lower rows_per_phase.")
    rng = np.random.default_rng(seed)
    arrays = {key: np.asarray(value) for key, value in features_of(features).items()}
    while True:
        chosen = rng.choice(len(groups), items_per_batch, replace=len(groups) < items_per_batch)
        rows = np.stack([rng.choice(groups[g], 2 * k, replace=False) for g in chosen])  # [T, 2K]
        parts = []
        for half in (rows[:, :k], rows[:, k:]):
            part = {key: value[half] for key, value in arrays.items()}
            part[RATING] = ratings[half]
            part[MASK] = np.ones(half.shape, "float32")
            parts.append(part)
        yield parts[0], parts[1]
