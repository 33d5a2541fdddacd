"""The one in-memory schema every dataset loader produces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import copy

import numpy as np
import pandas as pd

from tfmetarec.data.vectors import attach_item_vectors, is_vector_column, vector_matrix
from tfmetarec.types import CATEGORICAL, FIELD_KINDS, LIST, VECTOR

RATING_COLUMNS = ("user", "item", "rating")
RATING_OPTIONAL = ("timestamp",)
USER_COLUMNS = ("user",)
USER_OPTIONAL = ("gender", "age", "occupation", "zip")
ITEM_COLUMNS = ("item",)
ITEM_OPTIONAL = ("title", "year", "genres")
RESERVED_ITEM_COLUMNS = ("item", "title")
"""Item columns that are never content (every other item column may become a feature field)."""


MOVIELENS_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
                    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
                    "Western")
"""The 18 MovieLens genres (100K adds "unknown" in front; latest releases add more), in MovieLens' order."""


class DataFormatError(ValueError):
    """Malformed input data; the message names the file and line when known."""


SIDES = ("user", "item")
TRANSFORMS = ("age_bucket", "zip_prefix", "year_bucket", "l2_normalize")
VECTOR_TRANSFORMS = ("l2_normalize",)
MAX_LIST_WIDTH = 64
"""The most values a list field keeps per row unless its ``max_values`` says otherwise."""


@dataclass(frozen=True)
class Field:
    """One user or item feature field, declared once: what it reads and how it is encoded.

    Args:
        name: the field's name (its embedding is named after it); also the source
            column unless ``column`` is given.
        side: ``"user"`` or ``"item"``.
        kind: ``"categorical"`` (one value per row: gender, occupation, MPAA rate),
            ``"list"`` (several values per row: genres, directors, cast, tags) or ``"vector"``
            (items only: one fixed-length float array per item, e.g. a text embedding; see
            :mod:`tfmetarec.data.vectors`).
        column: the source column, when it differs from ``name``.
        transform: ``"age_bucket"`` (numeric ages into :data:`~tfmetarec.data.features.AGE_BUCKETS`),
            ``"zip_prefix"`` (the first digits of a zip code) or ``"year_bucket"``
            (release years into spans of years); for a vector field ``"l2_normalize"`` (each
            vector scaled to length 1); ``None`` uses the values as they are.
        max_values: list fields: values kept per row, in the order given (default:
            the longest training row, at most :data:`MAX_LIST_WIDTH`).
        min_count: values seen on fewer training users/items than this are treated
            as unseen (categorical: index 0; list: dropped).
    """

    name: str
    side: str
    kind: str = CATEGORICAL
    column: str | None = None
    transform: str | None = None
    max_values: int | None = None
    min_count: int = 1

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"Field {self.name!r}: side must be one of {SIDES}, got {self.side!r}.")
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"Field {self.name!r}: kind must be one of {FIELD_KINDS}, got {self.kind!r}.")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ValueError(f"Field {self.name!r}: transform must be one of {TRANSFORMS} or None, "
                             f"got {self.transform!r}.")
        if self.kind == VECTOR and self.side != "item":
            raise ValueError(f"Field {self.name!r}: vector fields are item fields (they live in the item table).")
        if self.transform is not None and (self.kind == VECTOR) != (self.transform in VECTOR_TRANSFORMS):
            raise ValueError(f"Field {self.name!r}: the {self.transform} transform does not apply to a {self.kind} "
                             "field.")
        if self.max_values is not None and self.max_values < 1:
            raise ValueError(f"Field {self.name!r}: max_values must be >= 1, got {self.max_values}.")
        if self.min_count < 1:
            raise ValueError(f"Field {self.name!r}: min_count must be >= 1, got {self.min_count}.")

    @property
    def source(self) -> str:
        """The column this field reads."""
        return self.column or self.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Field:
        return cls(**d)


def is_list_column(values: pd.Series) -> bool:
    """Whether every non-missing cell of a column holds a list or tuple (and some cell does)."""
    present = [v for v in values if isinstance(v, (list, tuple)) or not pd.isna(v)]
    return bool(present) and all(isinstance(v, (list, tuple)) for v in present)


def infer_fields(users: pd.DataFrame, items: pd.DataFrame, min_tag_items: int = 1) -> tuple[Field, ...]:
    """The default schema of a pair of user and item frames.

    Users: every column but ``user`` is a field (``age`` bucketed, ``zip`` cut to its
    prefix; list-valued columns are list fields). Items: ``year`` (bucketed),
    ``genres``, every other list-valued column (list fields; values on fewer
    than ``min_tag_items`` training items are dropped, genres excepted) and every
    column of numpy arrays (vector fields, each vector scaled to length 1). A scalar
    item column other than ``year`` (an MPAA rate, a studio) becomes a field only when
    declared: pass ``InteractionData(..., fields=...)`` with a :class:`Field` for it.
    """
    out: list[Field] = []
    for column in users.columns:
        if column == "user":
            continue
        transform = {"age": "age_bucket", "zip": "zip_prefix"}.get(str(column))
        kind = LIST if transform is None and is_list_column(users[column]) else CATEGORICAL
        out.append(Field(str(column), "user", kind, transform=transform))
    for column in items.columns:
        if column in RESERVED_ITEM_COLUMNS:
            continue
        if column == "year":
            out.append(Field("year", "item", CATEGORICAL, transform="year_bucket"))
        elif is_vector_column(items[column]):  # scaled to length 1: raw norms can make meta-training diverge
            out.append(Field(str(column), "item", VECTOR, transform="l2_normalize"))
        elif column == "genres" or is_list_column(items[column]):
            out.append(Field(str(column), "item", LIST, min_count=1 if column == "genres" else min_tag_items))
    return tuple(out)


def _check_fields(name: str, fields: Sequence[Field], users: pd.DataFrame, items: pd.DataFrame) -> tuple[Field, ...]:
    seen: set[tuple[str, str]] = set()
    for f in fields:
        if not isinstance(f, Field):
            raise TypeError(f"{name}: fields must be tfmetarec.data.Field objects, got {type(f).__name__}.")
        frame = users if f.side == "user" else items
        if f.source not in frame.columns:
            raise DataFormatError(f"{name}: field {f.name!r} reads column {f.source!r}, which the {f.side}s "
                                  f"frame lacks (columns: {list(frame.columns)})")
        if (f.side, f.name) in seen:
            raise DataFormatError(f"{name}: two {f.side} fields are named {f.name!r}")
        seen.add((f.side, f.name))
        if f.kind == LIST and not is_list_column(frame[f.source]) and frame[f.source].notna().any():
            raise DataFormatError(f"{name}: list field {f.name!r} needs a list (or tuple) per row in "
                                  f"{f.side}s.{f.source}")
        if f.kind == VECTOR:
            vector_matrix(frame[f.source], frame["item"], f"{name}: items.{f.source}")
    return tuple(fields)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{what} frame lacks column(s) {missing}; has {list(frame.columns)}")


def _ints(series: pd.Series, what: str) -> pd.Series:
    """IDs as int64: missing values, text that is not a whole number and fractional numbers (7.9
    would silently become 7, another user or item) are errors naming the row."""
    if series.isna().any():
        raise DataFormatError(f"{what} contains missing values (row {int(np.flatnonzero(series.isna())[0])})")
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype("int64")
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna().to_numpy() | (numbers.to_numpy(dtype="float64", na_value=np.nan) % 1 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{what} must hold whole-number IDs; row {i} holds {str(series.iloc[i])!r}")
    return numbers.astype("int64")


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Ratings plus user and item side information in the library's one schema.

    ``ratings``: user, item (int64), rating (float32) and optionally timestamp
    (int64 unix seconds; a time-based split needs it), one row per (user, item).
    ``fields``: the feature schema (:class:`Field` per user and item field); by
    default :func:`infer_fields` reads it off the frames.
    ``users``: user (int64) and any feature columns (gender, age, occupation, zip
    are understood). ``items``: item (int64) and optionally title (str), year
    (nullable Int64), genres (a list of str per row), and any further columns:
    one holding a list per row (cast, directors, keywords) is a list field, one
    holding a single value per row (an MPAA rate, a studio) a categorical field of
    :class:`~tfmetarec.data.features.FeatureEncoder`. Construction checks the
    columns, normalises the dtypes and verifies that every rated user and item
    has a row in ``users`` / ``items``.
    """

    name: str
    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    fields: tuple[Field, ...] | None = field(default=None)
    rating_range: tuple[float, float] | None = None
    """The ratings' scale (e.g. ``(1, 5)``), when known: a rating outside it is an error naming the row."""

    def __post_init__(self) -> None:
        ratings, users, items = self.validate()
        object.__setattr__(self, "ratings", ratings)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)
        fields = infer_fields(users, items) if self.fields is None else self.fields
        object.__setattr__(self, "fields", _check_fields(self.name, fields, users, items))

    def validate(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Check the frames and return copies with normalised dtypes."""
        _require(self.ratings, RATING_COLUMNS, f"{self.name}: ratings")
        _require(self.users, USER_COLUMNS, f"{self.name}: users")
        _require(self.items, ITEM_COLUMNS, f"{self.name}: items")

        r = self.ratings.reset_index(drop=True).copy()
        for col in ("user", "item", *[c for c in RATING_OPTIONAL if c in r.columns]):
            r[col] = _ints(r[col], f"{self.name}: ratings.{col}")
        if r.empty:
            raise DataFormatError(f"{self.name}: there are no ratings")
        r["rating"] = r["rating"].astype("float32")
        if not np.isfinite(r["rating"].to_numpy()).all():
            raise DataFormatError(f"{self.name}: ratings.rating contains NaN or infinite values")
        if self.rating_range is not None:
            lo, hi = (float(v) for v in self.rating_range)
            outside = ((r["rating"] < lo) | (r["rating"] > hi)).to_numpy()
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise DataFormatError(f"{self.name}: ratings row {i} (user {r['user'].iloc[i]}, item "
                                      f"{r['item'].iloc[i]}) has rating {r['rating'].iloc[i]:g}, outside the rating "
                                      f"range [{lo:g}, {hi:g}] ({int(outside.sum())} row(s) are)")
        dup = r.duplicated(["user", "item"])
        if dup.any():
            row = r.loc[dup.idxmax()]
            raise DataFormatError(f"{self.name}: duplicate rating for user {row['user']} and item {row['item']}")

        u = self.users.reset_index(drop=True).copy()
        u["user"] = _ints(u["user"], f"{self.name}: users.user")
        if u["user"].duplicated().any():
            raise DataFormatError(f"{self.name}: users.user has duplicate IDs")
        if "age" in u.columns:
            u["age"] = u["age"].astype("Int64" if u["age"].isna().any() else "int64")
        for col in ("gender", "occupation", "zip"):
            if col in u.columns:
                u[col] = u[col].astype("str")

        it = self.items.reset_index(drop=True).copy()
        it["item"] = _ints(it["item"], f"{self.name}: items.item")
        if it["item"].duplicated().any():
            raise DataFormatError(f"{self.name}: items.item has duplicate IDs")
        it["title"] = it["title"].astype("str") if "title" in it.columns else ""
        if "year" in it.columns:
            try:
                it["year"] = it["year"].astype("Int64")
            except (TypeError, ValueError) as err:
                raise DataFormatError(f"{self.name}: items.year must hold whole years or missing values ({err})") from err
        if "genres" in it.columns and not all(isinstance(g, (list, tuple)) for g in it["genres"]):
            raise DataFormatError(f"{self.name}: items.genres must hold a list of str per row")

        for key, frame, what in (("user", u, "users"), ("item", it, "items")):
            unknown = ~r[key].isin(frame[key])
            if unknown.any():
                bad = r.loc[unknown, key].unique()[:5].tolist()
                raise DataFormatError(f"{self.name}: rated {key} IDs {bad} have no row in {what}")
        return r, u, it

    def with_fields(self, fields: Sequence[Field]) -> InteractionData:
        """The same data described by other fields (checked against the frames; the frames are
        shared, not copied or validated again)."""
        out = copy.copy(self)
        object.__setattr__(out, "fields", _check_fields(self.name, tuple(fields), self.users, self.items))
        return out

    def with_item_vectors(self, vectors: pd.DataFrame, name: str = "vectors", normalize: bool = True,
                          what: str | None = None) -> InteractionData:
        """The same data with a vector field ``name`` read from ``vectors`` (columns ``item`` and
        ``vector``, e.g. :func:`~tfmetarec.data.vectors.read_item_vectors`; items it leaves out have
        no vector); ``normalize`` scales each vector to length 1 when encoding. Unknown item IDs
        are an error saying how many and which."""
        items = attach_item_vectors(self.items, vectors, name, what or f"{self.name}: item vectors")
        field_ = Field(name, "item", VECTOR, transform="l2_normalize" if normalize else None)
        return InteractionData(self.name, self.ratings, self.users, items, (*(self.fields or ()), field_),
                               self.rating_range)

    @property
    def has_timestamps(self) -> bool:
        """Whether the ratings carry a ``timestamp`` column."""
        return "timestamp" in self.ratings.columns

    def __repr__(self) -> str:
        return (
            f"InteractionData(name={self.name!r}, ratings={len(self.ratings)}, "
            f"users={len(self.users)}, items={len(self.items)})"
        )


def select_fields(data: InteractionData, keep: Sequence[str] | None = None, drop: Sequence[str] = ()) -> InteractionData:
    """``data`` with only the fields named in ``keep`` (None: all) and none named in ``drop``
    (by field name, user and item sides alike). A name the data has no field for is a
    :class:`DataFormatError` listing its fields. The columns stay: a dropped ``year`` still
    dates the items for the split."""
    if keep is None and not drop:
        return data
    names = [f.name for f in data.fields or ()]
    unknown = sorted((set(keep or ()) | set(drop)) - set(names))
    if unknown:
        raise DataFormatError(f"{data.name}: no field(s) {unknown} to keep or drop; its fields are {names}")
    chosen = [f for f in data.fields or () if (keep is None or f.name in keep) and f.name not in drop]
    return data.with_fields(chosen)
