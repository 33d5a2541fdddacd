"""Meta-Embedding: generated initial ID embeddings for new items (Pan et al., SIGIR 2019).

A rating model that embeds item IDs has nothing to say about a new item (ID 0,
the out-of-vocabulary bucket) except one shared OOV embedding. Meta-Embedding
replaces it with a *generator* that maps the item's content to an initial ID
embedding. :class:`MetaEmb` is a full :class:`~tfmetarec.models.base.MetaModel`
whose forward uses the generator for item ID 0, so every learner runs on it; the
paper's two-phase objective on item tasks, which trains the generator alone, is the
``metaemb_generator`` learner (:class:`~tfmetarec.learners.metaemb.MetaEmbeddingLearner`).
"""

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
from tfmetarec.types import Features, Params


@keras.saving.register_keras_serializable(package="tfmetarec")
class MetaEmb(DecisionStack, MetaModel):
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
        hidden_units: decision MLP widths before the rating output.
        generator_units: hidden ReLU layers of the generator (empty: linear map).
        **kwargs: the shared arguments of :class:`~tfmetarec.models.MetaModel`; some item
            field is required by the generator, item IDs are always embedded, ``use_ids``
            also embeds user IDs.
    """

    reads_one_user_row = True

    def __init__(self, hidden_units: Annotated[Sequence[int], AtLeast(1)] = (64, 64),
                 generator_units: Annotated[Sequence[int], AtLeast(1)] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.keep_arguments(locals())
        if not self.item_fields:
            raise ValueError("MetaEmb generates item embeddings from item content: it needs item_fields.")
        e, seed, dims, pooling = self.embedding_dim, self.seed, self.field_dims, self.list_pooling

        def seed_at(i: int) -> int | None:
            return None if seed is None else seed + i

        self.user_embeddings = FieldEmbeddings(self, "user_", self.user_field_specs, e, dims, pooling, seed, 0)
        user_width = self.user_embeddings.width
        if self.use_ids:
            self.add_weight(shape=(self.num_users, e), initializer=keras.initializers.RandomNormal(
                stddev=0.1, seed=seed_at(1)), name="user_id_embedding")
            user_width += e
        self.item_embeddings = FieldEmbeddings(self, "item_", self.item_field_specs, e, dims, pooling, seed, 50)
        content_width = self.item_embeddings.width
        self.add_weight(shape=(self.num_items, e), initializer=keras.initializers.RandomNormal(
            stddev=0.1, seed=seed_at(4)), name="item_id_embedding")
        self._generator = F.add_mlp(self, "generator", content_width, [*self.generator_units, e], seed, 10)
        self._decision = F.add_mlp(self, "decision", user_width + content_width + e, [*self.hidden_units, 1], seed,
                                   20, self.output_bias)
        self.built = True

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        groups = self.decision_groups(self._decision)
        rest = tuple(x for x in groups["all"] if x not in self._decision and x not in self._generator)
        return {**groups, "generator": tuple(self._generator), "embeddings": rest}

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

    def _score(self, params: Params, features: Features, users: tf.Tensor | None, items: tf.Tensor) -> tf.Tensor:
        return self.decide_sides(params, users, items, features)

    # -- MetaModel --------------------------------------------------------------------
    def forward(self, params: Params, features: Features) -> tf.Tensor:
        return self._score(params, features, self.user_inputs(params, features),
                           self.item_representation(params, features))

    def represent(self, params: Params, features: Features, adapt_names: Sequence[str]) -> tf.Tensor | None:
        """The user and item inputs side by side, when only decision layers adapt."""
        if not set(adapt_names) <= set(self._decision):
            return None
        return _side_by_side(self.user_inputs(params, features), self.item_representation(params, features))

    def forward_with_item_embedding(self, params: Params, item_embedding: tf.Tensor, features: Features) -> tf.Tensor:
        """Scores ``[T, N]`` with every row's item ID embedding replaced by the task's
        ``item_embedding [T, embedding_dim]`` (one item per task, as in item cold start)."""
        content = self.item_content(params, features)
        ids = tf.broadcast_to(tf.cast(item_embedding, content.dtype)[:, None, :],
                              tf.concat([tf.shape(content)[:-1], [self.embedding_dim]], axis=0))
        items = tf.concat([content, ids], axis=-1)
        return self._score(params, features, self.user_inputs(params, features), items)

    @property
    def user_state_dim(self) -> int | None:
        width = self.user_embeddings.width + int(self.use_ids) * self.embedding_dim
        return width or None

    @property
    def item_dim(self) -> int:
        return self.item_embeddings.width + self.embedding_dim

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        users = self.user_inputs(params, features)
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


def _side_by_side(users: tf.Tensor | None, items: tf.Tensor) -> tf.Tensor:
    """The decision MLP's input: the user inputs (when the model reads any) and the item's."""
    return items if users is None else tf.concat([users, items], axis=-1)
