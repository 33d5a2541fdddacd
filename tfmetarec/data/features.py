"""Vocabularies per feature field, and the integer arrays the models consume.

:class:`FeatureEncoder` is the one place that fits vocabularies. It encodes every
:class:`~tfmetarec.data.schema.Field` of a dataset into small integers: a
categorical field into one column (index 0 = missing or unseen), a list field
into ``width`` columns padded with 0 (unseen values dropped). Users become rows of
``user_fields``; items become rows of the *item table*, which a model holds and
gathers from inside its graph, so episodes carry item indices only.

Item table rows: row 0 is the unknown item (no content); rows ``1..num_items-1``
are the training items in vocabulary order, so for them the table row *is* the
ID-embedding index; further rows hold items known by content only (new items),
whose ID index is 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.data.schema import MAX_LIST_WIDTH, Field, InteractionData
from tfmetarec.data.transforms import (
    AgeBucket,
    ListLookup,
    Lookup,
    Transform,
    VectorPresence,
    YearBucket,
    list_values,
    year_span,
)
from tfmetarec.data.vectors import vector_matrix
from tfmetarec.types import LIST, VECTOR, FieldSpec, fields_width

ENCODER_FORMAT = 2


@dataclass(frozen=True)
class FeatureSpec:
    """What a model needs to know about the encoded features: each field's vocabulary
    size and width, and the ID vocabulary sizes (index 0 = out of vocabulary)."""

    user_fields: tuple[FieldSpec, ...]
    item_fields: tuple[FieldSpec, ...]
    num_users: int
    num_items: int
    digest: str = ""  # the encoder's :meth:`FeatureEncoder.digest`: a model built from it records it

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_fields": [f.to_config() for f in self.user_fields],
            "item_fields": [f.to_config() for f in self.item_fields],
            "num_users": int(self.num_users),
            "num_items": int(self.num_items),
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(FieldSpec.of(f) for f in d["user_fields"]), tuple(FieldSpec.of(f) for f in d["item_fields"]),
                   int(d["num_users"]), int(d["num_items"]), str(d.get("digest", "")))


@dataclass(frozen=True, eq=False)
class EncodedData:
    """Users' field rows, the item table, and ratings pointing into both."""

    spec: FeatureSpec
    ratings: pd.DataFrame  # input columns + user_row (into user arrays), item_row (= item table row), int32
    user_ids: np.ndarray  # [U] int32, 0 = user outside the ID vocabulary
    user_fields: np.ndarray  # [U, W_user] int32
    item_table: np.ndarray  # [R, W_item] int32; row 0 = the unknown item
    user_index: pd.Index  # raw user ID -> user row
    item_raw_ids: np.ndarray  # [R] int64: the raw ID of each table row (row 0: -1)
    item_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # vector field -> [R, dim] float32

    @property
    def num_table_items(self) -> int:
        """Rows of the item table (the unknown item included)."""
        return int(self.item_table.shape[0])

    def item_rows(self, raw_items: pd.Series | np.ndarray | Sequence) -> np.ndarray:
        """Item table rows of raw item IDs; unknown raw IDs raise, naming a few."""
        raw = np.asarray(raw_items, dtype=np.int64)
        index = pd.Index(self.item_raw_ids[1:])
        rows = index.get_indexer(raw)
        if (rows < 0).any():
            missing = raw[rows < 0][:5].tolist()
            raise ValueError(f"Raw item IDs not in the encoded data (first few: {missing}).")
        return (rows + 1).astype(np.int32)

    def item_vocab_ids(self, raw_items: pd.Series | np.ndarray | Sequence) -> np.ndarray:
        """ID-embedding indices of raw item IDs: the table row for a training item, 0 otherwise."""
        rows = self.item_rows(raw_items)
        return np.where(rows < self.spec.num_items, rows, 0).astype(np.int32)


def _sorted_keys(counts: dict[str, int], min_count: int) -> list[str]:
    return sorted(k for k, n in counts.items() if n >= min_count)


class FeatureEncoder:
    """Fits one vocabulary per field on the training users and items; anything unseen
    maps to index 0 (categorical) or is dropped (list).

    ``fields`` declares the schema; by default the data's own (``data.fields``,
    see :func:`~tfmetarec.data.schema.infer_fields`). Transforms: ``age_bucket``
    uses the fixed :data:`AGE_BUCKETS`; ``zip_prefix`` keeps the first
    ``zip_prefix_len`` digits; ``year_bucket`` groups release years into
    ``year_bucket_size``-year buckets spanning the training items' years (a year
    outside that span falls into the nearest end bucket: a newer release is
    closest to the newest known era). ``min_tag_items`` is the ``min_count`` of
    the inferred list fields other than genres.
    """

    def __init__(
        self,
        year_bucket_size: int = 5,
        zip_prefix_len: int = 2,
        min_tag_items: int = 1,
        fields: Sequence[Field] | None = None,
    ) -> None:
        if year_bucket_size < 1 or zip_prefix_len < 1 or min_tag_items < 1:
            raise ValueError("year_bucket_size, zip_prefix_len and min_tag_items must be positive")
        self.year_bucket_size = year_bucket_size
        self.zip_prefix_len = zip_prefix_len
        self.min_tag_items = min_tag_items
        self.declared = tuple(fields) if fields is not None else None
        self.fields: tuple[Field, ...] = ()
        self.vocabs: dict[str, list[str]] = {}  # "side:name" -> values (index = position + 1)
        self.widths: dict[str, int] = {}  # "side:name" -> list width
        self.dims: dict[str, int] = {}  # "item:name" -> vector dimension
        self.year_range: tuple[int, int] | None = None
        self.user_vocab: list[int] | None = None
        self.item_vocab: list[int] = []
        self.rating_range: tuple[float, float] | None = None

    @property
    def fitted(self) -> bool:
        return self.user_vocab is not None

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("FeatureEncoder is not fitted; call fit() first")

    def fields_of(self, side: str) -> tuple[Field, ...]:
        """The fitted fields of one side, in schema order."""
        return tuple(f for f in self.fields if f.side == side)

    # -- fitting --------------------------------------------------------------------
    def fit(
        self,
        data: InteractionData,
        train_users: Iterable | None = None,
        train_items: Iterable | None = None,
    ) -> FeatureEncoder:
        """Learn the ID vocabularies and every field's vocabulary from the training users and items."""
        users, items = data.users, data.items
        if train_users is not None:
            users = users[users["user"].isin(np.asarray(list(train_users), dtype=np.int64))]
        if train_items is not None:
            items = items[items["item"].isin(np.asarray(list(train_items), dtype=np.int64))]
        self.user_vocab = sorted(int(u) for u in users["user"])
        self.item_vocab = sorted(int(i) for i in items["item"])
        ratings = data.ratings["rating"]
        self.rating_range = (float(ratings.min()), float(ratings.max())) if len(ratings) else None
        if self.declared is not None:
            self.fields = self.declared
        else:
            self.fields = tuple(
                replace(f, min_count=max(f.min_count, self.min_tag_items))
                if f.side == "item" and f.kind == LIST and f.name != "genres" else f
                for f in data.fields or ()
            )
        self.vocabs, self.widths, self.dims, self.year_range = {}, {}, {}, None
        for f in self.fields:
            frame = users if f.side == "user" else items
            if f.source not in frame.columns:
                raise ValueError(f"Field {f.name!r} reads column {f.source!r}, which the {f.side}s lack.")
            self._fit_field(f, frame[f.source])
        return self

    def _fit_field(self, f: Field, column: pd.Series) -> None:
        key = f"{f.side}:{f.name}"
        if f.kind == VECTOR:
            matrix, _ = vector_matrix(column, column.index, f"training items' {f.name!r} vectors")
            self.dims[key] = int(matrix.shape[1])
            return
        if f.transform == "age_bucket":
            return
        if f.transform == "year_bucket":
            self.year_range = year_span(column, self.year_bucket_size)
            return
        if f.kind == LIST:
            counts: dict[str, int] = {}
            longest = 0
            for cell in column:
                values = list_values(cell)
                longest = max(longest, len(values))
                for v in values:
                    counts[v] = counts.get(v, 0) + 1
            self.vocabs[key] = _sorted_keys(counts, f.min_count)
            self.widths[key] = int(f.max_values or max(1, min(longest, MAX_LIST_WIDTH)))
            return
        keys = pd.Series(Lookup((), self.zip_prefix_len if f.transform == "zip_prefix" else None).key_text(column))
        counts = keys.value_counts(dropna=True).to_dict()
        self.vocabs[key] = _sorted_keys({str(k): int(v) for k, v in counts.items()}, f.min_count)

    # -- the fitted transforms ------------------------------------------------------------
    def transform_of(self, f: Field) -> Transform:
        """The fitted transform of one field (raw values -> indices, numpy and TensorFlow faces)."""
        self._require_fitted()
        key = f"{f.side}:{f.name}"
        if f.kind == VECTOR:
            return VectorPresence(self.dims[key])
        if f.transform == "age_bucket":
            return AgeBucket()
        if f.transform == "year_bucket":
            return YearBucket(self.year_bucket_size, self.year_range)
        if f.kind == LIST:
            return ListLookup(tuple(self.vocabs[key]), self.widths[key])
        return Lookup(tuple(self.vocabs[key]), self.zip_prefix_len if f.transform == "zip_prefix" else None)

    def field_spec(self, f: Field) -> FieldSpec:
        """The encoded shape of one fitted field."""
        t = self.transform_of(f)
        return FieldSpec(f.name, t.kind, t.vocab_size, t.width, t.dim if f.kind == VECTOR else 0)

    @property
    def spec(self) -> FeatureSpec:
        """The :class:`FeatureSpec` of this fitted encoder."""
        self._require_fitted()
        return FeatureSpec(
            user_fields=tuple(self.field_spec(f) for f in self.fields_of("user")),
            item_fields=tuple(self.field_spec(f) for f in self.fields_of("item")),
            num_users=len(self.user_vocab or []) + 1,
            num_items=len(self.item_vocab) + 1,
            digest=self.digest(),
        )

    def digest(self) -> str:
        """A sha256 of everything this encoder decides (vocabularies, transforms, widths, the rating
        range): a model built from :meth:`spec` keeps it, so a saved model and an encoder that were
        not fitted together (a swapped vocabulary, another rating range) are told apart."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def vocabulary(self, side: str, name: str) -> list[str]:
        """The values of a fitted field, index ``i`` meaning ``vocabulary[i - 1]``
        (the fixed buckets of a transformed field are described by :meth:`labels`)."""
        return list(self.vocabs.get(f"{side}:{name}", []))

    def labels(self, side: str, name: str) -> list:
        """What each index of a field's embedding stands for (index 0 first): vocabulary
        values, bucket edges, or ``"<oov>"`` / ``"<pad>"``. Used to match rows by value."""
        f = next((x for x in self.fields_of(side) if x.name == name), None)
        if f is None:
            raise KeyError(f"No {side} field {name!r}; fields: {[x.name for x in self.fields_of(side)]}.")
        return self.transform_of(f).labels()

    # -- encoding ------------------------------------------------------------------------
    def _encode_field(self, f: Field, column: pd.Series) -> np.ndarray:
        """``[rows, width]`` int32 indices of one field."""
        out = self.transform_of(f).numpy(column.to_numpy(dtype=object) if f.kind != LIST else list(column))
        return out if f.kind == LIST else out[:, None]

    def _encode_side(self, side: str, frame: pd.DataFrame) -> np.ndarray:
        cols = []
        for f in self.fields_of(side):
            if f.source in frame.columns:
                cols.append(self._encode_field(f, frame[f.source]))
            else:  # a missing column is missing for every row
                cols.append(np.zeros((len(frame), self.field_spec(f).width), np.int32))
        return np.concatenate(cols, axis=1) if cols else np.zeros((len(frame), 0), np.int32)

    def encode_users(self, users: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(user_ids [U], user_fields [U, W_user])`` of a frame with a ``user`` column and
        any of the user fields' columns (absent columns count as missing)."""
        self._require_fitted()
        raw = users["user"].to_numpy(dtype=np.int64) if "user" in users.columns else np.zeros(len(users), np.int64)
        return _lookup(self.user_vocab or [], raw), self._encode_side("user", users)

    def encode_items(self, items: pd.DataFrame) -> np.ndarray:
        """Item table rows ``[I, W_item]`` of a frame holding the item fields' columns
        (absent columns count as missing): what ``model.add_items`` takes."""
        self._require_fitted()
        return self._encode_side("item", items)

    def item_vectors(self, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each vector field's vectors ``[I, dim]`` float32 for the rows of ``items`` (zeros where an
        item has none; ``l2_normalize`` applied): what ``model.add_items`` takes beside the rows of
        :meth:`encode_items`. A vector of another dimension than the training items' is an error
        naming the item."""
        self._require_fitted()
        out = {}
        ids = items["item"].tolist() if "item" in items.columns else list(range(len(items)))
        for f in self.fields_of("item"):
            if f.kind != VECTOR:
                continue
            dim = self.dims[f"item:{f.name}"]
            column = items[f.source] if f.source in items.columns else pd.Series([None] * len(items))
            if not self.transform_of(f).numpy(column).any():
                out[f.name] = np.zeros((len(items), dim), np.float32)
                continue
            matrix, present = vector_matrix(column, ids, f"items.{f.source}")
            if matrix.shape[1] != dim:
                k = int(np.flatnonzero(present)[0])
                raise ValueError(f"items.{f.source}: item {ids[k]} has a {matrix.shape[1]}-dimensional vector; the "
                                 f"encoder was fitted on {dim} dimensions.")
            if f.transform == "l2_normalize":
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = np.where(norms > 0, matrix / np.maximum(norms, 1e-12), matrix).astype(np.float32)
            out[f.name] = matrix
        return out

    def transform(self, data: InteractionData, ratings: pd.DataFrame | None = None) -> EncodedData:
        """Encode every user and item of ``data``; ``ratings`` defaults to ``data.ratings``."""
        spec = self.spec
        users = data.users.sort_values("user", ignore_index=True)
        user_index = pd.Index(users["user"].to_numpy(dtype=np.int64), name="user")
        user_ids, user_fields = self.encode_users(users)

        known = pd.Index(np.asarray(self.item_vocab, dtype=np.int64))
        raw_items = data.items["item"].to_numpy(dtype=np.int64)
        at = known.get_indexer(raw_items)
        extra = np.sort(raw_items[at < 0])
        table_raw = np.concatenate([[-1], known.to_numpy(), extra]).astype(np.int64)
        by_raw = data.items.set_index("item")
        present = np.isin(table_raw[1:], raw_items)
        if not present.all():
            missing = table_raw[1:][~present][:5].tolist()
            raise ValueError(f"The encoder's item vocabulary holds items {missing} that {data.name} lacks.")
        rows = by_raw.loc[table_raw[1:]].reset_index()
        item_table = np.concatenate([np.zeros((1, fields_width(spec.item_fields)), np.int32),
                                     self.encode_items(rows)], axis=0)
        vectors = {name: np.concatenate([np.zeros((1, m.shape[1]), np.float32), m])
                   for name, m in self.item_vectors(rows).items()}

        frame = (data.ratings if ratings is None else ratings).copy()
        user_row = user_index.get_indexer(frame["user"].to_numpy())
        item_row = pd.Index(table_raw[1:]).get_indexer(frame["item"].to_numpy())
        for name, found in (("user", user_row), ("item", item_row)):
            if (found < 0).any():
                bad = frame.loc[found < 0, name].unique()[:5].tolist()
                raise ValueError(f"ratings reference {name} IDs {bad} that are not in data.{name}s")
        frame["user_row"] = user_row.astype(np.int32)
        frame["item_row"] = (item_row + 1).astype(np.int32)
        return EncodedData(spec, frame, user_ids, user_fields.astype(np.int32), item_table.astype(np.int32),
                           user_index, table_raw, vectors)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_dict` rebuilds this encoder."""
        self._require_fitted()
        return {
            "format": ENCODER_FORMAT,
            "year_bucket_size": self.year_bucket_size,
            "zip_prefix_len": self.zip_prefix_len,
            "min_tag_items": self.min_tag_items,
            "fields": [f.to_dict() for f in self.fields],
            "vocabs": {k: list(v) for k, v in self.vocabs.items()},
            "widths": dict(self.widths),
            "dims": dict(self.dims),
            "year_range": None if self.year_range is None else list(self.year_range),
            "user_vocab": list(self.user_vocab or []),
            "item_vocab": list(self.item_vocab),
            "rating_range": None if self.rating_range is None else list(self.rating_range),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureEncoder:
        if d.get("format") != ENCODER_FORMAT:
            raise ValueError(
                f"This encoder was saved in format {d.get('format', 1)!r}; this library reads format "
                f"{ENCODER_FORMAT} (one vocabulary per field). Re-fit it on the training data "
                "(FeatureEncoder().fit(...)), or re-make the preset with scripts/make_presets.py."
            )
        fields = [Field.from_dict(f) for f in d["fields"]]
        enc = cls(int(d["year_bucket_size"]), int(d["zip_prefix_len"]), int(d.get("min_tag_items", 1)), fields)
        enc.fields = tuple(fields)
        enc.vocabs = {k: [str(x) for x in v] for k, v in d["vocabs"].items()}
        enc.widths = {k: int(v) for k, v in d["widths"].items()}
        enc.dims = {k: int(v) for k, v in d.get("dims", {}).items()}
        enc.year_range = None if d["year_range"] is None else (int(d["year_range"][0]), int(d["year_range"][1]))
        enc.user_vocab = [int(u) for u in d["user_vocab"]]
        enc.item_vocab = [int(i) for i in d["item_vocab"]]
        span = d.get("rating_range")
        enc.rating_range = None if span is None else (float(span[0]), float(span[1]))
        return enc


def _lookup(vocab: Sequence[int], values: np.ndarray) -> np.ndarray:
    """1-based position of each value in ``vocab``; 0 for unseen values."""
    idx = pd.Index(np.asarray(vocab, dtype=np.int64)).get_indexer(np.asarray(values, dtype=np.int64))
    return (idx + 1).astype(np.int32)
