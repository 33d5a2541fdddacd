"""Raw IDs in: the feature encoder's vocabularies as lookup tables inside the graph.

:class:`RawInputs` is built from a fitted :class:`~tfmetarec.data.FeatureEncoder`
(the one place that fits vocabularies) and the raw item IDs of a model's item
table. It turns what a client knows -- raw user and item IDs (int64) and raw field
values (strings: ``"F"``, ``"25"``, ``"85711"``, ``"PG-13"``) -- into the small
integers a model reads, with exactly the encoder's rules: anything unseen maps to
index 0 (a list field drops it), ages and years are bucketed, zip codes cut to their
prefix. A SavedModel built on it takes raw requests, so no client re-implements the
encoder or keeps its own copy of the item table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfmetarec.data.features import FeatureEncoder
from tfmetarec.data.schema import Field
from tfmetarec.data.transforms import ListLookup, Lookup
from tfmetarec.types import ITEM_FIELDS, ITEM_ID, LIST, USER_FIELDS, USER_ID, FieldSpec

def _int_table(keys: np.ndarray, values: np.ndarray) -> tf.lookup.StaticHashTable:
    keys = np.asarray(keys, np.int64)
    if keys.size == 0:  # a table needs one entry; an impossible key stands in
        keys, values = np.array([np.iinfo(np.int64).min], np.int64), np.array([0], np.int32)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(np.asarray(values, np.int32))),
        default_value=0)


class RawInputs(tf.Module):
    """Lookups from raw request values to feature indices (see the module docstring).

    Args:
        encoder: the fitted encoder whose vocabularies the model was trained with.
        item_raw_ids: the raw ID of every row of the model's item table (row 0, the
            unknown item, and rows without a raw ID hold -1).
    """

    def __init__(self, encoder: FeatureEncoder, item_raw_ids: np.ndarray, name: str | None = None):
        super().__init__(name=name)
        if not encoder.fitted:
            raise ValueError("RawInputs needs a fitted FeatureEncoder.")
        raw = np.asarray(item_raw_ids, np.int64)
        rows = np.flatnonzero(raw >= 0)
        if len(np.unique(raw[rows])) != len(rows):
            dup = raw[rows][np.unique(raw[rows], return_counts=True)[1] > 1][:5]
            raise ValueError(f"The item table holds raw item IDs {dup.tolist()} more than once.")
        self.encoder = encoder
        self.user_fields: tuple[Field, ...] = encoder.fields_of("user")
        self.item_fields: tuple[Field, ...] = encoder.fields_of("item")
        self._transforms = {f"{f.side}:{f.name}": encoder.transform_of(f) for f in (*self.user_fields, *self.item_fields)}
        self.user_specs: tuple[FieldSpec, ...] = tuple(encoder.field_spec(f) for f in self.user_fields)
        self.item_specs: tuple[FieldSpec, ...] = tuple(encoder.field_spec(f) for f in self.item_fields)
        self.num_table_items = len(raw)
        users = np.asarray(encoder.user_vocab or [], np.int64)
        self._users = _int_table(users, np.arange(1, len(users) + 1))
        self._items = _int_table(raw[rows], rows)
        # the transforms' lookup tables, held here so a SavedModel tracks them
        self._tables = [t.table() for t in self._transforms.values() if isinstance(t, (Lookup, ListLookup))]

    # -- IDs -----------------------------------------------------------------------------
    def user_ids(self, raw: tf.Tensor) -> tf.Tensor:
        """User ID vocabulary indices of raw user IDs (unknown: 0)."""
        return self._users.lookup(tf.cast(raw, tf.int64))

    def item_rows(self, raw: tf.Tensor) -> tf.Tensor:
        """Item table rows of raw item IDs (unknown: 0, the unknown item)."""
        return self._items.lookup(tf.cast(raw, tf.int64))

    # -- fields --------------------------------------------------------------------------
    def _side(self, fields: Sequence[Field], specs: Sequence[FieldSpec], values: Mapping[str, tf.Tensor],
              side: str, shape: tf.Tensor | None) -> tf.Tensor:
        unknown = sorted(set(values) - {f.name for f in fields})
        if unknown:
            raise KeyError(f"Unknown {side} fields {unknown}; the model's {side} fields are {[f.name for f in fields]}.")
        cols = []
        for f, spec in zip(fields, specs):
            label = f"{side}_{f.name}"
            if f.name not in values:  # a field the client does not send is missing for every row
                if shape is None:
                    raise KeyError(f"{label} is needed (or pass the rows' shape).")
                cols.append(tf.zeros(tf.concat([shape, [spec.width]], 0), tf.int32))
                continue
            out = self._transforms[f"{f.side}:{f.name}"].tf(values[f.name], label)
            cols.append(out if f.kind == LIST else out[..., None])
        if not cols:
            return tf.zeros(tf.concat([shape if shape is not None else [0], [0]], 0), tf.int32)
        return tf.concat(cols, axis=-1)

    def user_field_indices(self, values: Mapping[str, tf.Tensor], shape: tf.Tensor | None = None) -> tf.Tensor:
        """``[..., W_user]`` from raw values by field name (each ``[...]``; missing fields: 0)."""
        return self._side(self.user_fields, self.user_specs, values, "user", shape)

    def item_field_indices(self, values: Mapping[str, tf.Tensor], shape: tf.Tensor | None = None) -> tf.Tensor:
        """``[..., W_item]`` from raw item content by field name (categorical ``[...]``,
        list ``[..., L]``; missing fields: 0): an item the table does not hold."""
        return self._side(self.item_fields, self.item_specs, values, "item", shape)

    def features(self, user_id: tf.Tensor, user_values: Mapping[str, tf.Tensor], item_id: tf.Tensor,
                 item_values: Mapping[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
        """A model's feature batch ``[T, N]`` for ``T`` users (raw ``user_id [T]`` and field
        values ``[T]``) and their raw ``item_id [T, N]``; with ``item_values`` (content
        ``[T, N]`` / ``[T, N, L]``) the items' content comes from the request instead of
        the item table."""
        item_id = tf.convert_to_tensor(item_id)
        rows = tf.shape(item_id)
        users = self.user_field_indices(user_values, rows[:1])
        out = {
            USER_ID: tf.broadcast_to(self.user_ids(user_id)[:, None], rows),
            ITEM_ID: self.item_rows(item_id),
            USER_FIELDS: tf.broadcast_to(users[:, None, :], tf.concat([rows, tf.shape(users)[-1:]], 0)),
        }
        if item_values is not None:
            out[ITEM_FIELDS] = self.item_field_indices(item_values, rows)
        return out
