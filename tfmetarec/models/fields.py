"""Per-field embeddings: one table per user or item field, shared by every model.

A model declares its fields (:class:`~tfmetarec.types.FieldSpec`) and creates one
:class:`FieldEmbeddings` per side; the object adds a weight per field to the model
and, called on the encoded indices, returns the fields' vectors side by side. A
categorical field gives its row; a list field (genres, directors, cast) pools the
rows of its values over the non-padding entries, so a film's genres are not
diluted by its cast. A vector field (an item's text or image embedding) projects the
item's vector, read from the model's vector table beside its item table, with a learned
layer; an item without a vector gets a learned default instead (never zeros taken as
data). Like :mod:`tfmetarec.models.functional`, the call is a pure
function of the parameter mapping (tables may carry a leading task axis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.types import CATEGORICAL, VECTOR, FieldSpec, Params

POOLINGS = ("mean", "sum")


def field_dims(fields: Sequence[FieldSpec], default: int, overrides: Mapping[str, int] | None) -> list[int]:
    """Each field's embedding width: ``overrides[name]`` when given, else ``default``."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in fields})
    if unknown:
        raise ValueError(f"field_dims names fields {unknown} that the model does not have "
                         f"(fields: {[f.name for f in fields]}).")
    dims = [int(overrides.get(f.name, default)) for f in fields]
    if any(d < 1 for d in dims):
        raise ValueError(f"Embedding widths must be >= 1, got {dict(zip([f.name for f in fields], dims))}.")
    return dims


class FieldEmbeddings:
    """One embedding table per field, created on ``owner`` as ``{prefix}{name}_embedding``.

    Args:
        owner: the model that holds the weights.
        prefix: weight-name prefix (e.g. ``"user_"``, ``"cf_item_"``).
        fields: the fields, in the order of the encoded columns.
        dim: default embedding width.
        dims: per-field widths overriding ``dim`` (by field name).
        pooling: how a list field combines its values: ``"mean"`` (default) or ``"sum"``.
        seed: initialiser seed (field ``k`` uses ``seed + seed_offset + k``).
        stddev: initial standard deviation of the embeddings.
    """

    def __init__(self, owner: Any, prefix: str, fields: Sequence[FieldSpec], dim: int,
                 dims: Mapping[str, int] | None = None, pooling: str = "mean", seed: int | None = None,
                 seed_offset: int = 0, stddev: float = 0.1):
        if pooling not in POOLINGS:
            raise ValueError(f"list pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.fields = tuple(FieldSpec.of(f) for f in fields)
        self.dims = field_dims(self.fields, dim, dims)
        self.pooling = pooling
        self.owner = owner
        self.names: list[str] = []
        for k, (f, d) in enumerate(zip(self.fields, self.dims)):
            field_seed = None if seed is None else seed + seed_offset + k
            init = keras.initializers.RandomNormal(stddev=stddev, seed=field_seed)
            if f.kind == VECTOR:  # a projection of the vector, and the embedding of "no vector"
                name = f"{prefix}{f.name}_projection"
                owner.add_weight(shape=(int(f.dim), d), initializer=keras.initializers.GlorotUniform(seed=field_seed),
                                 name=name)
                owner.add_weight(shape=(d,), initializer="zeros", name=f"{name}_bias")
                owner.add_weight(shape=(d,), initializer=init, name=f"{prefix}{f.name}_missing")
            else:
                name = f"{prefix}{f.name}_embedding"
                owner.add_weight(shape=(int(f.vocab_size), d), initializer=init, name=name)
            self.names.append(name)

    @property
    def width(self) -> int:
        """Width of the output: the fields' embedding widths summed."""
        return sum(self.dims)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def vectors(self, params: Params, indices: tf.Tensor) -> list[tf.Tensor]:
        """Each field's vector ``[..., dim_f]`` from the encoded indices ``[..., W]``."""
        out, start = [], 0
        for f, name in zip(self.fields, self.names):
            first, start = start, start + f.width
            if f.kind == VECTOR:  # one column: sliced once (no [..., 1] slice then its column)
                out.append(self._vector(params, f, name, indices[..., first]))
                continue
            table = params[name]
            if f.kind == CATEGORICAL:
                out.append(F.embed(table, indices[..., first]))
                continue
            cols = indices[..., first:start]
            rows = F.embed(table, cols)  # [..., L, d]
            present = tf.cast(cols > 0, rows.dtype)[..., None]
            summed = tf.reduce_sum(rows * present, axis=-2)
            if self.pooling == "mean":
                summed = summed / tf.maximum(tf.reduce_sum(present, axis=-2), 1.0)
            out.append(summed)
        return out

    def _vector(self, params: Params, f: FieldSpec, name: str, rows: tf.Tensor) -> tf.Tensor:
        """``[..., d]``: the projected vector of each item (``rows``: its row in the vector table,
        0 for none) or the learned "no vector" embedding."""
        vectors = tf.gather(self.owner.item_vector_table(f.name), rows)  # [..., dim]
        kernel, bias = params[name], params[f"{name}_bias"]
        missing = params[name.removesuffix("_projection") + "_missing"]
        projected = F.dense(vectors, kernel, bias)
        if F.is_task_batched(missing, 1):
            missing = tf.reshape(missing, tf.concat([tf.shape(missing)[:1], tf.ones([projected.shape.rank - 2],
                                                                                    tf.int32), tf.shape(missing)[1:]], 0))
        has = tf.cast(rows > 0, projected.dtype)[..., None]
        return has * projected + (1.0 - has) * missing

    def __call__(self, params: Params, indices: tf.Tensor) -> tf.Tensor:
        """The fields' vectors concatenated: ``[..., width]``."""
        if not self.fields:
            raise ValueError("No fields to embed.")
        return tf.concat(self.vectors(params, tf.cast(indices, tf.int32)), axis=-1)
