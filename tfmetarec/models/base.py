"""The contract every tfmetarec model follows.

A :class:`MetaModel` is a Keras subclassed model whose forward pass is a pure
function of named parameters: ``forward(params, features)``. ``call`` runs it
with the model's own variables; a learner runs it with adapted tensors (with a
leading task axis) to score a task after adaptation, with gradients flowing
through the adapted tensors back to the variables.

Every model owns an *item table*: one row of field indices per item (row 0 is
the unknown item), built from the feature encoder. A feature batch names items
by their row (``item_id``) and the model gathers their content in the graph;
:meth:`MetaModel.add_items` adds items known only by their content without any
retraining. The table is not trainable and is saved with the model.

Beside it the model holds an *item offset* per table row (zero until set): a rating shift
added to every score of that item, which :mod:`tfmetarec.learners.item_warmup` fits for new
items from their first ratings, so a new item is adapted from its raters as a user is from
their ratings. It is saved and exported with the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.fields import FieldEmbeddings
from tfmetarec.options import AtLeast, Configurable, check_options
from tfmetarec.registry import MODEL_SKIP
from tfmetarec.types import (
    ITEM_FIELDS,
    ITEM_ID,
    ITEM_ID_HIDDEN,
    ITEM_OFFSET,
    USER_FIELDS,
    USER_ID,
    VECTOR,
    Features,
    FieldSpec,
    Params,
    fields_width,
)

ID_WEIGHT = re.compile(r"(^|_)(user|item)_id_(embedding|factors|bias|residual)$")
"""The names of the weights learned per training user or item ID (``[cf_]item_id_factors``,
``user_id_embedding``, ...), not a field's embedding such as ``user_city_id_embedding``."""
ITEM_TABLE_KEY = "item_table"  # where the table goes in a .keras weights store
ITEM_RAW_IDS_KEY = "item_raw_ids"
ITEM_OFFSET_KEY = "item_offset"
ITEM_VECTORS_KEY = "item_vectors:"  # + the vector field's name
NO_RAW_ID = -1


def table_value(variable: tf.Variable) -> tf.Tensor:
    """A table variable's value, for gathers: read whole (no copy), then gathered from. A gather
    straight from the variable would put it in copy-on-read mode, after which every read of it,
    ``tf.shape`` included, copies the whole table, on every request of a served graph (~0.15 ms
    for a 100,000-item table of 4 columns)."""
    return tf.convert_to_tensor(variable)


class MetaModel(Configurable, keras.Model):
    """Base class: named parameters, parameter groups, a pure forward pass and an item table.

    Its constructor takes what every model shares; a model's own constructor adds its own
    settings and passes the rest on (``def __init__(self, hidden_units=(64, 64), **kwargs)``).
    Every argument is kept under its own name and :meth:`get_config` returns exactly them.

    Args:
        user_fields, item_fields: the user and item fields (:class:`~tfmetarec.types.FieldSpec`
            or ``[name, kind, vocab_size, width]``); the item fields are the item table's columns.
        embedding_dim: width of every field embedding (``field_dims`` overrides it per field).
        field_dims: per-field embedding widths, by field name.
        num_users, num_items: ID vocabulary sizes (index 0 = out of vocabulary; the item
            vocabulary holds the training items).
        encoder_digest: the digest of the encoder whose spec built the model (``spec.digest``;
            empty when unknown), so a preset can tell whether its encoder is the model's.
        use_ids: also embed IDs where the model knows how (see each model).
        list_pooling: how a list field pools its values' embeddings: mean or sum.
        output_bias: initial value of the output bias / global mean (a typical rating).
        seed: initialiser seed.
    """

    not_settings = MODEL_SKIP
    dot_product_scores: bool = False
    """Whether the score is ``<user_representation, item_representation>`` plus a constant, so a
    catalogue can be ranked by a vector search over precomputed item vectors."""
    reads_item_representation: bool = False
    """Whether :meth:`forward` takes the item side's output from a feature batch's
    ``ITEM_REPRESENTATION`` when it holds one (a two-stage ``recommend`` estimates scores
    from precomputed item representations through it)."""
    reads_one_user_row: bool = False
    """Whether :meth:`forward` scores items ``[T, N]`` for user inputs given once per task
    (``USER_ID [T, 1]``, ``USER_FIELDS [T, 1, W]``) exactly as for those inputs repeated on every
    row, computing the user's side once (serving many items to one user)."""
    default_retrieval_weight: float = 0.0
    """The in-batch softmax weight a :class:`~tfmetarec.objectives.QueryLoss` that leaves
    ``retrieval_weight`` unset takes for this model."""

    def __init__(
        self,
        user_fields: Sequence[FieldSpec] = (),
        item_fields: Sequence[FieldSpec] = (),
        embedding_dim: Annotated[int, AtLeast(1)] = 32,
        field_dims: Annotated[Mapping[str, int], AtLeast(1)] | None = None,
        num_users: int = 1,
        num_items: int = 1,
        encoder_digest: str = "",
        use_ids: bool = False,
        list_pooling: Literal["mean", "sum"] = "mean",
        output_bias: float = 3.5,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if int(num_users) < 1 or int(num_items) < 1:
            raise ValueError(f"{type(self).__name__}: num_users and num_items must be >= 1, got {num_users} and "
                             f"{num_items}.")
        self.user_fields = [FieldSpec.of(f).to_config() for f in (user_fields or ())]
        self.item_fields = [FieldSpec.of(f).to_config() for f in (item_fields or ())]
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.encoder_digest = str(encoder_digest)
        self.keep_arguments(locals())
        self._create_item_table(self.item_field_specs)

    @classmethod
    def from_spec(cls, spec: Any, item_table: np.ndarray | None = None, item_raw_ids: np.ndarray | None = None,
                  item_vectors: dict[str, np.ndarray] | None = None, **options: Any) -> MetaModel:
        """A model sized for the encoded features described by ``spec``.

        ``spec`` is any object with ``user_fields`` and ``item_fields`` (sequences
        of :class:`~tfmetarec.types.FieldSpec`), ``num_users`` and ``num_items``, and optionally
        the encoder's ``digest`` (e.g. a ``tfmetarec.data.features.FeatureSpec``). ``options`` are the model's
        settings (:meth:`settings`; an unknown one is refused, naming the known ones) or
        Keras' ``name`` / ``dtype``. ``item_table`` and ``item_raw_ids`` (e.g.
        ``EncodedData.item_table`` and ``.item_raw_ids``; ``item_vectors`` for vector fields) fill
        the item table; without them it holds the unknown item only until :meth:`set_item_table`.
        """
        keras_arguments = {k: options.pop(k) for k in ("name", "dtype", "trainable") if k in options}
        check_options(cls.settings(), options, cls.__name__)
        model = cls(user_fields=[FieldSpec.of(f).to_config() for f in spec.user_fields],
                    item_fields=[FieldSpec.of(f).to_config() for f in spec.item_fields],
                    num_users=int(spec.num_users), num_items=int(spec.num_items),
                    encoder_digest=str(getattr(spec, "digest", "")), **options, **keras_arguments)
        if item_table is not None:
            model.set_item_table(item_table, item_raw_ids, item_vectors)
        return model

    # -- fields and the item table -------------------------------------------------------
    @property
    def user_field_specs(self) -> tuple[FieldSpec, ...]:
        """The user fields this model embeds."""
        return tuple(FieldSpec.of(f) for f in self.user_fields)

    @property
    def item_field_specs(self) -> tuple[FieldSpec, ...]:
        """The item fields this model embeds (the columns of its item table)."""
        return tuple(FieldSpec.of(f) for f in self.item_fields)

    def _create_item_table(self, fields: Sequence[FieldSpec]) -> None:
        width = fields_width(fields)
        with tf.init_scope():
            self._item_table = tf.Variable(tf.zeros([1, width], tf.int32), shape=tf.TensorShape([None, width]),
                                           trainable=False, name=ITEM_TABLE_KEY)
            self._item_raw_ids = tf.Variable(tf.constant([NO_RAW_ID], tf.int64), shape=tf.TensorShape([None]),
                                             trainable=False, name=ITEM_RAW_IDS_KEY)
            self._item_offset = tf.Variable(tf.zeros([1], tf.float32), shape=tf.TensorShape([None]),
                                            trainable=False, name=ITEM_OFFSET_KEY)
            self._item_vector_tables = tuple(
                (f.name, tf.Variable(tf.zeros([1, f.dim], tf.float32), shape=tf.TensorShape([None, f.dim]),
                                     trainable=False, name=f"item_vectors_{f.name}"))
                for f in fields if f.kind == VECTOR)

    # -- vector fields: their vectors, row by row beside the item table ---------------------
    def _vector_columns(self) -> dict[str, int]:
        """Each vector field's column in the item table."""
        out, start = {}, 0
        for f in self.item_field_specs:
            if f.kind == VECTOR:
                out[f.name] = start
            start += f.width
        return out

    def item_vector_table(self, name: str) -> tf.Variable:
        """The ``[rows, dim]`` vectors of the vector field ``name`` (row r: table row r; zeros where
        an item has none)."""
        for field_name, table in self._item_vector_tables:
            if field_name == name:
                return table
        raise KeyError(f"{type(self).__name__} has no item vector field {name!r}; its vector fields are "
                       f"{[n for n, _ in self._item_vector_tables]}.")

    @property
    def item_vectors(self) -> dict[str, np.ndarray]:
        """Each vector field's ``[rows, dim]`` vectors (numpy)."""
        return {name: table.numpy() for name, table in self._item_vector_tables}

    def _checked_vectors(self, rows: np.ndarray, vectors: dict[str, np.ndarray] | None, what: str
                         ) -> dict[str, np.ndarray]:
        """The vectors of ``rows`` (zeros where a row says it has none), checked: one ``[n, dim]``
        finite array per vector field whose column marks a row as having a vector."""
        vectors = dict(vectors or {})
        unknown = sorted(set(vectors) - {n for n, _ in self._item_vector_tables})
        if unknown:
            raise ValueError(f"{what}: vectors given for {unknown}, which are not vector fields of the model "
                             f"({[n for n, _ in self._item_vector_tables]}).")
        out = {}
        for name, column in self._vector_columns().items():
            dim = int(self.item_vector_table(name).shape[1])
            has = rows[:, column]
            if ((has != 0) & (has != 1)).any():
                raise ValueError(f"{what}: the column of vector field {name!r} must hold 0 (no vector) or 1, got "
                                 f"{np.unique(has)[:5].tolist()}.")
            given = vectors.get(name)
            if given is None:
                if has.any():
                    raise ValueError(f"{what}: {int(has.sum())} row(s) have a {name!r} vector but no vectors were "
                                     f"given (pass vectors={{{name!r}: [rows, {dim}] array}}).")
                out[name] = np.zeros((len(rows), dim), np.float32)
                continue
            given = np.asarray(given, dtype=np.float32)
            if given.shape != (len(rows), dim):
                raise ValueError(f"{what}: {name!r} vectors must be [{len(rows)}, {dim}], got {given.shape}.")
            bad = (has == 1) & ~np.isfinite(given).all(axis=1)
            if bad.any():
                raise ValueError(f"{what}: row {int(np.flatnonzero(bad)[0])} has NaN or infinite {name!r} values.")
            out[name] = np.where(has[:, None] == 1, given, 0.0).astype(np.float32)
        return out

    @property
    def item_table(self) -> np.ndarray:
        """The item table ``[rows, W_item]`` (int32; row 0 is the unknown item)."""
        return self._item_table.numpy()

    @property
    def item_raw_ids(self) -> np.ndarray:
        """The raw item ID of every table row (``[rows]`` int64; -1 for row 0 and for rows
        added without one): what a raw-ID request or a recommendation names items by."""
        return self._item_raw_ids.numpy()

    @property
    def item_offsets(self) -> np.ndarray:
        """The rating offset of every table row (``[rows]`` float32; 0 unless set)."""
        return self._item_offset.numpy()

    def set_item_offsets(self, offsets: np.ndarray) -> None:
        """Set the rating offset of every table row (``[rows]``, finite; row 0 stays 0): a shift
        added to each score of that item (see :func:`tfmetarec.learners.item_warmup.warm_up_items`)."""
        values = np.asarray(offsets, dtype=np.float64)
        rows = self.num_table_items
        if values.shape != (rows,):
            raise ValueError(f"item offsets must be one value per item table row ({rows}), got shape {values.shape}.")
        if not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values))
            raise ValueError(f"item offsets must be finite; rows {bad[:5].tolist()} hold {values[bad[:5]].tolist()}.")
        values = values.astype(np.float32)
        values[0] = 0.0
        self._item_offset.assign(values)

    def item_offset(self, features: Features) -> tf.Tensor:
        """Every row's item offset ``[...]``: ``features``' own ``item_offset`` if given, else the
        model's (0 for rows outside the table and for batches that carry item fields instead of
        table rows)."""
        if ITEM_OFFSET in features:
            return tf.cast(features[ITEM_OFFSET], tf.float32)
        if ITEM_ID not in features or ITEM_FIELDS in features:
            return tf.zeros([], tf.float32)
        rows = tf.cast(features[ITEM_ID], tf.int32)
        offsets = table_value(self._item_offset)
        inside = (rows >= 0) & (rows < tf.shape(offsets, out_type=tf.int32)[0])
        return tf.gather(offsets, tf.where(inside, rows, tf.zeros_like(rows)))

    def with_item_offset(self, scores: tf.Tensor, features: Features) -> tf.Tensor:
        """``scores`` plus each row's :meth:`item_offset`: the last step of every forward pass."""
        return scores + tf.cast(self.item_offset(features), scores.dtype)

    @property
    def num_table_items(self) -> int:
        """Rows of the item table, the unknown item included."""
        return int(tf.shape(self._item_table)[0])

    def _checked_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        fields = self.item_field_specs
        width = fields_width(fields)
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"{what} must be [items, {width}] (the item fields "
                             f"{[f.name for f in fields]} side by side), got shape {rows.shape}.")
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"{what} must hold integer field indices, got {rows.dtype}.")
        start = 0
        for f in fields:
            block = rows[:, start:start + f.width]
            bad = (block < 0) | (block >= f.vocab_size)
            if bad.any():
                r = int(np.argwhere(bad)[0][0])
                raise ValueError(f"{what} row {r}: field {f.name!r} holds {block[r].tolist()}, outside its "
                                 f"vocabulary [0, {f.vocab_size}).")
            start += f.width
        return rows.astype(np.int32)

    def _checked_raw_ids(self, raw_ids: np.ndarray | None, count: int, existing: np.ndarray) -> np.ndarray:
        raw = np.full(count, NO_RAW_ID, np.int64) if raw_ids is None else np.asarray(raw_ids)
        if raw.shape != (count,) or (raw.size and not np.issubdtype(raw.dtype, np.integer)):
            raise ValueError(f"raw item IDs must be {count} integers (one per row), got shape {raw.shape} "
                             f"of {raw.dtype}.")
        named = raw[raw != NO_RAW_ID]
        if (named < 0).any():
            raise ValueError(f"Raw item IDs must be >= 0 (-1 marks a row without one); got {named[named < 0][:5]}.")
        both = np.concatenate([existing[existing != NO_RAW_ID], named])
        values, counts = np.unique(both, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"Raw item IDs {values[counts > 1][:5].tolist()} would be in the item table twice.")
        return raw.astype(np.int64)

    def set_item_table(self, table: np.ndarray, raw_ids: np.ndarray | None = None,
                       vectors: dict[str, np.ndarray] | None = None) -> None:
        """Replace the whole item table (``[rows, W_item]``; row 0 is the unknown item and
        is reset to no content), with the raw item ID of each row (row 0's is ignored) and,
        for vector fields, the vectors of each row (``{field: [rows, dim]}``, e.g.
        ``EncodedData.item_vectors``). Rows ``1..num_items-1`` must be the training items in
        ID-vocabulary order, as :meth:`FeatureEncoder.transform` lays them out."""
        table = self._checked_rows(table, "item_table").copy()
        need = self.num_items
        if len(table) < need:
            raise ValueError(f"item_table has {len(table)} rows, but the model's {need - 1} training items and the "
                             f"unknown item need {need}: rows 1..{need - 1} are the items of the ID vocabulary.")
        table[0] = 0
        raw = None if raw_ids is None else np.asarray(raw_ids).copy()
        if raw is not None and len(raw):
            raw[0] = NO_RAW_ID
        raw = self._checked_raw_ids(raw, len(table), np.zeros(0, np.int64))
        checked = self._checked_vectors(table, vectors, "item_table")
        self._item_table.assign(table)
        self._item_raw_ids.assign(raw)
        self._item_offset.assign(np.zeros(len(table), np.float32))
        for name, values in checked.items():
            self.item_vector_table(name).assign(values)

    def add_items(self, rows: np.ndarray, raw_ids: np.ndarray | None = None,
                  vectors: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Append items known only by their content (``[n, W_item]`` field indices, e.g.
        ``encoder.encode_items(frame)``), their raw IDs and, for vector fields, their vectors
        (``encoder.item_vectors(frame)``); returns their new table rows. No retraining: an
        added item is scored from its content (its ID index is 0)."""
        rows = self._checked_rows(rows, "new item rows")
        raw = self._checked_raw_ids(raw_ids, len(rows), self.item_raw_ids)
        checked = self._checked_vectors(rows, vectors, "new item rows")
        for name, values in checked.items():
            table = self.item_vector_table(name)
            table.assign(np.concatenate([table.numpy(), values], axis=0))
        start = self.num_table_items
        self._item_table.assign(np.concatenate([self.item_table, rows], axis=0))
        self._item_raw_ids.assign(np.concatenate([self.item_raw_ids, raw]))
        self._item_offset.assign(np.concatenate([self.item_offsets, np.zeros(len(rows), np.float32)]))
        return np.arange(start, start + len(rows), dtype=np.int32)

    def item_field_indices(self, features: Features) -> tf.Tensor:
        """Every row's item content ``[..., W_item]``: ``features["item_fields"]`` when the
        batch carries it, else gathered from the item table (rows outside it: unknown item)."""
        columns = self._vector_columns()
        if ITEM_FIELDS in features:
            if columns:
                raise ValueError(f"{type(self).__name__} has item vector fields {sorted(columns)}, read from its item "
                                 "table: name items by their table row (item_id), not by item_fields.")
            return tf.cast(features[ITEM_FIELDS], tf.int32)
        check_features(features, [ITEM_ID], type(self).__name__)
        rows = tf.cast(features[ITEM_ID], tf.int32)
        table = table_value(self._item_table)
        inside = (rows >= 0) & (rows < tf.shape(table, out_type=tf.int32)[0])
        rows = tf.where(inside, rows, tf.zeros_like(rows))
        indices = tf.gather(table, rows)
        if not columns:
            return indices
        # a vector field's column: 1/0 in the table, the row of the item's vector (0: none) here
        width = fields_width(self.item_field_specs)
        is_vector = np.zeros(width, bool)
        is_vector[list(columns.values())] = True
        return tf.where(tf.constant(is_vector), indices * rows[..., None], indices)

    @property
    def embeds_ids(self) -> bool:
        """Whether the model has per-ID weights (user or item rows learned per training ID): what
        ID dropout (``EpisodeSampler(id_dropout=...)``) hides."""
        return any(ID_WEIGHT.search(name) for name in self.parameters())

    def item_id_index(self, features: Features) -> tf.Tensor:
        """The ID-embedding index of every row's item: its table row for a training item
        (rows ``1..num_items-1``), 0 for an unknown or content-only item and for a row whose
        ``item_id_hidden`` is set (ID dropout in training)."""
        check_features(features, [ITEM_ID], type(self).__name__)
        rows = tf.cast(features[ITEM_ID], tf.int32)
        known = (rows > 0) & (rows < self.num_items)
        if ITEM_ID_HIDDEN in features:
            known &= tf.cast(features[ITEM_ID_HIDDEN], tf.float32) <= 0.0
        return tf.where(known, rows, tf.zeros_like(rows))

    def save_own_variables(self, store) -> None:
        super().save_own_variables(store)
        store[ITEM_TABLE_KEY] = self.item_table
        store[ITEM_RAW_IDS_KEY] = self.item_raw_ids
        store[ITEM_OFFSET_KEY] = self.item_offsets
        for name, values in self.item_vectors.items():
            store[ITEM_VECTORS_KEY + name] = values

    def load_own_variables(self, store) -> None:
        keys = list(store.keys())
        if ITEM_TABLE_KEY in keys:
            table = self._checked_rows(np.asarray(store[ITEM_TABLE_KEY]), "the saved item table")
            raw = np.asarray(store[ITEM_RAW_IDS_KEY]) if ITEM_RAW_IDS_KEY in keys else None
            if raw is not None and raw.shape != (len(table),):
                raise ValueError(f"The saved item table has {len(table)} rows but {raw.shape} raw item IDs.")
            self._item_table.assign(table)
            self._item_raw_ids.assign(self._checked_raw_ids(raw, len(table), np.zeros(0, np.int64)))
            self._item_offset.assign(np.zeros(len(table), np.float32))
            vectors = {name: np.asarray(store[ITEM_VECTORS_KEY + name]) for name, _ in self._item_vector_tables
                       if ITEM_VECTORS_KEY + name in keys}
            for name, values in self._checked_vectors(table, vectors, "the saved item table").items():
                self.item_vector_table(name).assign(values)
            if ITEM_OFFSET_KEY in keys:  # stores written before item offsets existed hold none
                self.set_item_offsets(np.asarray(store[ITEM_OFFSET_KEY]))
        own = (ITEM_TABLE_KEY, ITEM_RAW_IDS_KEY, ITEM_OFFSET_KEY,
               *(ITEM_VECTORS_KEY + name for name, _ in self._item_vector_tables))
        super().load_own_variables({k: store[k] for k in keys if k not in own})

    def get_config(self) -> dict:
        """Keras' config plus every constructor argument: the feature spec and the settings."""
        config = super().get_config()
        config.update(user_fields=self.user_fields, item_fields=self.item_fields, num_users=self.num_users,
                      num_items=self.num_items, encoder_digest=self.encoder_digest, **self.settings_config())
        return config

    def task_context(self, support: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Per-task values a model reads from the support besides its parameters
        (``{}`` here). Every learner puts them in the adapted state, so the query
        is scored with them; see :class:`~tfmetarec.models.hybrid.Hybrid`."""
        return {}

    def task_context_keys(self) -> tuple[str, ...]:
        """The keys :meth:`task_context` returns (none here)."""
        return ()

    def merge_task_context(self, state: Mapping[str, tf.Tensor], new: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The task context after more support rows arrive: ``new`` (the new rows' own
        :meth:`task_context`) added to the one held in ``state`` (contexts are sums over
        rows, e.g. a support size)."""
        return {k: state[k] + v if k in state else v for k, v in new.items()}

    def with_task_context(self, params: Mapping[str, tf.Tensor], state: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``params`` plus the task-context entries found in a learner's ``state``."""
        return {**params, **{k: state[k] for k in self.task_context_keys() if k in state}}

    def parameters(self) -> dict[str, tf.Variable]:
        """The trainable variables by their (unique) names."""
        params: dict[str, tf.Variable] = {}
        for variable in self.trainable_variables:
            if variable.name in params:
                raise ValueError(f"Duplicate parameter name {variable.name!r} in {self.name}.")
            params[variable.name] = variable
        return params

    def param_groups(self) -> dict[str, tuple[str, ...]]:
        """Named subsets of parameters a learner may adapt. Always has ``"all"``."""
        return {"all": tuple(self.parameters())}

    def resolve_params(self, adapt: str | Sequence[str]) -> tuple[str, ...]:
        """Parameter names for a group name or an explicit list of names."""
        groups = self.param_groups()
        if isinstance(adapt, str):
            if adapt not in groups:
                raise ValueError(
                    f"{type(self).__name__} has no parameter group {adapt!r}; "
                    f"choose from {sorted(groups)} or pass parameter names."
                )
            return groups[adapt]
        names = tuple(adapt)
        known = self.parameters()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"Unknown parameters {unknown}; the model has {sorted(known)}.")
        if not names:
            raise ValueError("At least one parameter must be adapted.")
        return names

    def forward(self, params: Params, features: Features) -> tf.Tensor:
        """Predicted ratings ``[...]`` for ``features`` under ``params``."""
        raise NotImplementedError  # abstract: each model defines its forward pass

    def call(self, features: Features) -> tf.Tensor:
        return self.forward(self.variable_values(), features)

    # -- the part of the forward pass that adaptation leaves alone ------------------------
    def represent(self, params: Params, features: Features, adapt_names: Sequence[str]) -> Any:
        """What :meth:`forward` computes from the parameters outside ``adapt_names`` alone (for
        MeLU: the field embeddings side by side, when only decision layers adapt), so an inner
        loop computes it once per task instead of once per step and differentiates only
        through :meth:`decide`. ``None`` (the default) when the model cannot split its forward
        pass for these parameters: the loop then runs :meth:`forward` at every step."""
        return None

    def decide(self, params: Params, representation: Any, features: Features) -> tf.Tensor:
        """:meth:`forward` from :meth:`represent`'s output:
        ``forward(p, f) == decide(p, represent(p, f, names), f)`` for any ``p`` that differs
        from the one ``represent`` saw only in ``names``."""
        raise NotImplementedError(f"{type(self).__name__} does not split its forward pass (represent is None).")

    def first_decision_layer(self) -> tuple[str, str] | None:
        """``(kernel, bias)`` of the dense layer that reads :meth:`represent`'s output, when
        :meth:`decide_from_first_layer` goes on from that layer's pre-activation (None: the
        model has no such layer). An inner loop that adapts this kernel by plain SGD keeps its
        update as a low-rank product with the support's representation. A subclass that changes
        :meth:`decide` must change this too (or return None)."""
        return None

    def decide_from_first_layer(self, params: Params, pre_activation: tf.Tensor, features: Features) -> tf.Tensor:
        """:meth:`decide` from the first decision layer's pre-activation:
        ``decide(p, r, f) == decide_from_first_layer(p, r @ p[kernel] + p[bias], f)``."""
        raise NotImplementedError(f"{type(self).__name__} has no first decision layer to go on from.")

    # -- pieces shared by the field models ---------------------------------------------
    user_embeddings: FieldEmbeddings | None = None
    """The user fields' embeddings (a model that embeds user fields sets it)."""

    def user_inputs(self, params: Params, features: Features) -> tf.Tensor | None:
        """The user's field embeddings and, with ``use_ids``, its ``user_id_embedding`` row, side
        by side: ``[..., width]`` (None when the model reads no user input)."""
        parts = []
        if self.user_embeddings:
            check_features(features, [USER_FIELDS], type(self).__name__)
            parts.append(self.user_embeddings(params, features[USER_FIELDS]))
        if self.use_ids and "user_id_embedding" in params:
            check_features(features, [USER_ID], type(self).__name__)
            parts.append(F.embed(params["user_id_embedding"], features[USER_ID]))
        return tf.concat(parts, axis=-1) if parts else None

    def decision_groups(self, decision: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """``all``, ``decision`` (a decision MLP's weights) and ``head`` (its last layer)."""
        n = len(decision) // 2 - 1
        return {"all": tuple(self.parameters()), "decision": tuple(decision),
                "head": (f"decision_{n}_kernel", f"decision_{n}_bias")}

    # -- optional hooks for learners that adapt a user *representation* --------------
    # Metric- and model-based learners build a per-task user state from the support
    # set instead of adapting weights. A model supports them by implementing the three
    # hooks below; the default raises a clear error naming the model.
    @property
    def user_state_dim(self) -> int | None:
        """Width of the user state ``forward_with_user_state`` takes (None: the model has no
        user-state hooks)."""
        return None

    @property
    def item_dim(self) -> int | None:
        """Width of :meth:`item_representation` (None: the model has no item representation)."""
        return None

    def user_representation(self, params: Params, features: Features) -> tf.Tensor:
        """The user state implied by user features alone: ``[..., user_state_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose a user representation.")

    def item_representation(self, params: Params, features: Features) -> tf.Tensor:
        """Item embeddings from item inputs: ``[..., item_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose item representations.")

    def forward_with_user_state(self, params: Params, user_state: tf.Tensor, features: Features) -> tf.Tensor:
        """Predicted ratings ``[T, N]`` with the user part replaced by ``user_state [T, D]``."""
        raise NotImplementedError(f"{type(self).__name__} cannot score from an external user state.")

    # -- dot-product search (models with dot_product_scores) ----------------------------
    def search_item_vectors(self, params: Params, features: Features) -> tf.Tensor:
        """Item vectors ``[..., item_dim + 1]`` whose dot product with :meth:`search_query` is the
        score less its constant term: the item representation with the item offset appended."""
        items = self.item_representation(params, features)
        offset = tf.broadcast_to(tf.cast(self.item_offset(features), items.dtype), tf.shape(items)[:-1])
        return tf.concat([items, offset[..., None]], axis=-1)

    def search_query(self, params: Params, features: Features) -> tf.Tensor:
        """The user vectors ``[..., user_dim + 1]`` that go with :meth:`search_item_vectors`."""
        users = self.user_representation(params, features)
        return tf.concat([users, tf.ones_like(users[..., :1])], axis=-1)

    def variable_values(self) -> dict[str, tf.Tensor]:
        """The current parameter values as tensors (what ``call`` uses)."""
        return {name: v.value for name, v in self.parameters().items()}


def check_features(features: Mapping[str, tf.Tensor], required: Sequence[str], model: str) -> None:
    """Raise a clear error when a feature batch lacks an input the model needs."""
    missing = [k for k in required if k not in features]
    if missing:
        raise KeyError(f"{model} needs inputs {list(required)}; missing {missing}.")
