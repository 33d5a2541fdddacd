"""How a field's raw values become the indices a model reads: one class per transform, each with a
numpy face and a TensorFlow face side by side.

A fitted :class:`~tfmetarec.data.features.FeatureEncoder` gives every field one transform
(:meth:`~tfmetarec.data.features.FeatureEncoder.transform_of`):

* :class:`Lookup`: a categorical value (stripped text; whole numbers without a decimal point)
  to its vocabulary index, 0 for missing or unseen; optionally cut to a prefix of digits first
  (zip codes);
* :class:`ListLookup`: a list of values to ``width`` indices, known values first in their order,
  each once, padded with 0;
* :class:`AgeBucket` and :class:`YearBucket`: a number to its bucket, 0 for missing;
* :class:`VectorPresence`: an item's vector to 1, a missing one to 0 (the vectors themselves go
  to the model beside its item table, :meth:`FeatureEncoder.item_vectors`).

``numpy(values)`` serves the encoder (data frames) and the ONNX client (requests);
``tf(values)`` serves the SavedModel's raw-ID inputs. The faces agree on every input the
parity tests feed them (``tests/data/test_transforms.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.types import CATEGORICAL, LIST, VECTOR

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
"""Lower edges of the age buckets after the first: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""
NUMBER = r"\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*"
"""What a numeric field's raw text must look like in a request ('' is missing)."""
NUMBER_PATTERN = re.compile(NUMBER)


def normalise_value(value: object) -> str | None:
    """The vocabulary key of one raw categorical value: stripped text, whole numbers
    without a decimal point (``3.0`` and ``3`` are the same key); None when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def list_values(cell: object) -> list[str]:
    """The distinct non-missing keys of one list cell, in their given order (a missing cell has none)."""
    if not isinstance(cell, (list, tuple, np.ndarray)):
        return []
    out: list[str] = []
    for v in cell:
        key = normalise_value(v)
        if key is not None and key not in out:
            out.append(key)
    return out


def numbers(values: Any, label: str | None = None) -> np.ndarray:
    """Raw numeric values as float64 (NaN = missing). With ``label`` (a request) a value that is
    neither a number nor empty is a ``ValueError`` naming it; without, it counts as missing."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    if label is not None:  # a request: a few values, each checked (plain Python: pandas costs more here)
        text = ["" if v is None else (v.decode() if isinstance(v, bytes) else str(v)).strip() for v in flat]
        bad = [t for t in text if t and not NUMBER_PATTERN.fullmatch(t)]
        if bad:
            raise ValueError(f"{label} must hold numbers (or '' for missing), got {bad[:3]}.")
        return np.array([float(t) if t else np.nan for t in text], dtype="float64").reshape(np.shape(values))
    out = pd.to_numeric(pd.Series(flat), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return out.reshape(np.shape(values))


def _tf_numbers(values: Any, label: str):
    """``(value float64, present bool)``: numeric strings; an empty string is missing, anything
    else not a number fails naming the input."""
    import tensorflow as tf

    text = tf.strings.strip(_tf_text(values))
    empty = tf.equal(text, "")
    ok = tf.strings.regex_full_match(text, NUMBER)
    check = tf.debugging.assert_equal(tf.reduce_all(ok | empty), True,
                                      message=f"{label} must hold numbers (or '' for missing)")
    with tf.control_dependencies([check]):
        number = tf.strings.to_number(tf.where(ok, text, "0"), tf.float64)
    return number, ok


def _tf_text(values: Any):
    import tensorflow as tf

    value = tf.convert_to_tensor(values)
    return value if value.dtype == tf.string else tf.strings.as_string(value)


class _Table:
    """A lazily built ``tf.lookup.StaticHashTable`` from string keys to 1-based positions (0 unseen)."""

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        self._table = None

    def get(self):
        if self._table is None:
            import tensorflow as tf

            keys = self.keys or ["\x00<empty vocabulary>"]  # a table needs one entry
            self._table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string),
                                                    tf.constant(np.arange(1, len(keys) + 1), tf.int32)),
                default_value=0)
        return self._table


class _Vocabulary:
    """What the two vocabulary transforms share: string ``keys`` (index = position + 1) and the
    TensorFlow face's lookup table, built on first use."""

    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(str(k) for k in self.keys))
        object.__setattr__(self, "_table", _Table(self.keys))
        object.__setattr__(self, "_positions", {k: i + 1 for i, k in enumerate(self.keys)})  # the numpy face's

    @property
    def vocab_size(self) -> int:
        return len(self.keys) + 1

    def table(self):
        """The TensorFlow face's lookup table (a module exporting it must hold it to track it)."""
        return self._table.get()


@dataclass(frozen=True, eq=False)
class Lookup(_Vocabulary):
    """A categorical field: a value to its index in ``keys`` (1-based; 0 missing or unseen).
    With ``prefix``, the value is first cut to its first ``prefix`` characters, which must all be
    digits (else missing): a zip code's region."""

    keys: tuple[str, ...]
    prefix: int | None = None
    kind: str = field(default=CATEGORICAL, init=False)
    width: int = field(default=1, init=False)
    _table: _Table = field(init=False, repr=False)

    def key_text(self, values: Any) -> np.ndarray:
        """The vocabulary key of each raw value (None when missing), after the prefix cut."""
        flat = [normalise_value(v) for v in np.asarray(values, dtype=object).reshape(-1)]
        if self.prefix is not None:
            n = self.prefix
            flat = [k[:n] if k is not None and len(k[:n]) == n and k[:n].isdigit() and k[:n].isascii() else None
                    for k in flat]
        return np.asarray(flat, dtype=object).reshape(np.shape(values))

    def numpy(self, values: Any, label: str | None = None) -> np.ndarray:
        keys = self.key_text(values)
        position = self._positions
        return np.fromiter((position.get(k, 0) for k in keys.reshape(-1)), np.int32, keys.size).reshape(keys.shape)

    def tf(self, values: Any, label: str = "value"):
        import tensorflow as tf

        text = tf.strings.strip(_tf_text(values))
        if self.prefix is not None:
            n = self.prefix
            head = tf.strings.substr(text, 0, n, unit="UTF8_CHAR")
            text = tf.where(tf.strings.regex_full_match(head, rf"[0-9]{{{n}}}"), head, "")
        return self._table.get().lookup(text)

    def labels(self) -> list[str]:
        return ["<oov>", *self.keys]


@dataclass(frozen=True, eq=False)
class ListLookup(_Vocabulary):
    """A list field: up to ``width`` known values, in their given order, each once, as indices
    (unseen values dropped, padding 0)."""

    keys: tuple[str, ...]
    width: int
    kind: str = field(default=LIST, init=False)
    _table: _Table = field(init=False, repr=False)

    def numpy(self, values: Any, label: str | None = None) -> np.ndarray:
        """``values``: one list (or tuple / array of strings, or None) per row -> ``[rows, width]``."""
        cells = list(values)
        position = self._positions
        out = np.zeros((len(cells), self.width), np.int32)
        for row, cell in enumerate(cells):
            known = [position[v] for v in list_values(cell) if v in position][: self.width]
            out[row, : len(known)] = known
        return out

    def tf(self, values: Any, label: str = "value"):
        """``[..., L]`` strings -> ``[..., width]``: known values first in their order, each once."""
        import tensorflow as tf

        idx = self._table.get().lookup(tf.strings.strip(_tf_text(values)))
        length = tf.shape(idx)[-1]
        earlier = tf.linalg.band_part(tf.ones(tf.stack([length, length]), tf.bool), -1, 0)
        earlier = earlier & ~tf.eye(length, dtype=tf.bool)  # [j, k]: k comes before j
        repeated = tf.reduce_any(tf.equal(idx[..., :, None], idx[..., None, :]) & earlier, axis=-1)
        idx = tf.where(repeated, 0, idx)
        order = tf.argsort(tf.cast(idx == 0, tf.int32), axis=-1, stable=True)
        idx = tf.gather(idx, order, batch_dims=len(idx.shape) - 1)
        pad = tf.maximum(self.width - length, 0)
        idx = tf.pad(idx, [[0, 0]] * (len(idx.shape) - 1) + [[0, pad]])
        return idx[..., : self.width]

    def labels(self) -> list[str]:
        return ["<pad>", *self.keys]


@dataclass(frozen=True)
class AgeBucket:
    """An age to its bucket: 1 for the youngest up to ``len(edges) + 1``; 0 missing."""

    edges: tuple[float, ...] = AGE_BUCKETS
    kind: str = field(default=CATEGORICAL, init=False)
    width: int = field(default=1, init=False)

    @property
    def vocab_size(self) -> int:
        return len(self.edges) + 2

    def numpy(self, values: Any, label: str | None = None) -> np.ndarray:
        ages = numbers(values, label)
        out = np.searchsorted(np.asarray(self.edges, dtype="float64"), ages, side="right") + 1
        return np.where(np.isnan(ages), 0, out).astype(np.int32)

    def tf(self, values: Any, label: str = "age"):
        import tensorflow as tf

        age, present = _tf_numbers(values, label)
        edges = tf.constant(self.edges, tf.float64)
        bucket = tf.reduce_sum(tf.cast(age[..., None] >= edges, tf.int32), axis=-1) + 1
        return tf.where(present, bucket, 0)

    def labels(self) -> list[str]:
        return ["<missing>", f"age<{self.edges[0]:g}", *[f"age>={a:g}" for a in self.edges]]


@dataclass(frozen=True)
class YearBucket:
    """A year to its ``size``-year bucket over the training items' ``span`` (first bucket 1; a
    year outside the span falls into the nearest end bucket); 0 missing. No span (no training
    item had a year): every year is 0."""

    size: int
    span: tuple[int, int] | None
    kind: str = field(default=CATEGORICAL, init=False)
    width: int = field(default=1, init=False)

    @property
    def vocab_size(self) -> int:
        return 1 if self.span is None else (self.span[1] - self.span[0]) // self.size + 2

    def numpy(self, values: Any, label: str | None = None) -> np.ndarray:
        years = numbers(values, label)
        if self.span is None:
            return np.zeros(years.shape, dtype=np.int32)
        lo, hi = self.span
        clipped = np.clip(np.nan_to_num(years, nan=lo), lo, hi + self.size - 1)
        bucket = (clipped - lo) // self.size + 1
        return np.where(np.isnan(years), 0, bucket).astype(np.int32)

    def tf(self, values: Any, label: str = "year"):
        import tensorflow as tf

        year, present = _tf_numbers(values, label)
        if self.span is None:
            return tf.zeros_like(year, tf.int32)
        lo, hi = self.span
        clipped = tf.clip_by_value(year, float(lo), float(hi + self.size - 1))
        bucket = tf.cast(tf.math.floordiv(clipped - lo, float(self.size)), tf.int32) + 1
        return tf.where(present, bucket, 0)

    def labels(self) -> list[str]:
        lo = self.span[0] if self.span else 0
        return ["<missing>", *[f"year>={lo + k * self.size}" for k in range(self.vocab_size - 1)]]


@dataclass(frozen=True)
class VectorPresence:
    """A vector field's column in the item table: 1 where the item has a ``dim``-wide vector,
    0 where it has none (the model then uses a learned default)."""

    dim: int
    kind: str = field(default=VECTOR, init=False)
    width: int = field(default=1, init=False)
    vocab_size: int = field(default=2, init=False)

    def numpy(self, values: Any, label: str | None = None) -> np.ndarray:
        cells = list(values)
        return np.array([isinstance(v, (np.ndarray, list, tuple)) or not pd.isna(v) for v in cells],
                        np.int32).reshape(len(cells))

    def tf(self, values: Any, label: str = "vector"):
        raise ValueError("Vector fields are item fields, read from the model's item table: a request cannot carry one.")

    def labels(self) -> list[str]:
        return ["<no vector>", f"<vector of {self.dim}>"]


Transform = Lookup | ListLookup | AgeBucket | YearBucket | VectorPresence


def year_span(values: Any, size: int) -> tuple[int, int] | None:
    """The bucket-aligned ``(first, last)`` year of training values (None when there are none)."""
    years = numbers(values)
    years = years[~np.isnan(years)]
    return (int(years.min()) // size * size, int(years.max()) // size * size) if len(years) else None


__all__ = ["AGE_BUCKETS", "NUMBER", "AgeBucket", "ListLookup", "Lookup", "Transform", "VectorPresence", "YearBucket",
           "list_values",
           "normalise_value", "numbers", "year_span"]
