"""Integer and multi-hot encodings of user and item side information."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.data.schema import ITEM_COLUMNS, InteractionData

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
"""Lower edges of the age buckets after the first: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""

_USER_FIELDS = (("gender", "gender"), ("age", "age_bucket"), ("occupation", "occupation"), ("zip", "zip_prefix"))
_FIXED_FIELDS = {"age_bucket": len(AGE_BUCKETS) + 2}  # buckets 1..7 plus 0 = missing


def age_bucket(age: pd.Series | np.ndarray) -> np.ndarray:
    """Vocabulary index of each age: 1 for <18 up to 7 for 56+, 0 when missing."""
    values = pd.to_numeric(pd.Series(age), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    out = np.searchsorted(np.asarray(AGE_BUCKETS, dtype="float64"), values, side="right") + 1
    return np.where(np.isnan(values), 0, out).astype(np.int32)


def zip_prefix(zips: pd.Series, length: int) -> pd.Series:
    """The first ``length`` characters of each zip code if they are all digits, else missing."""
    head = zips.astype("str").str.strip().str[:length]
    ok = head.str.fullmatch(rf"\d{{{length}}}").fillna(False).astype(bool)
    return head.where(ok)


@dataclass(frozen=True)
class FeatureSpec:
    """Shapes and vocabulary sizes a model needs to embed the encoded features."""

    user_fields: tuple[str, ...]
    user_vocab_sizes: tuple[int, ...]
    item_fields: tuple[str, ...]
    item_vocab_sizes: tuple[int, ...]
    genres: tuple[str, ...]
    num_users: int
    num_items: int

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        tuples = ("user_fields", "user_vocab_sizes", "item_fields", "item_vocab_sizes", "genres")
        return cls(**{k: tuple(d[k]) if k in tuples else int(d[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class EncodedData:
    """Dense per-user and per-item feature rows, and ratings pointing into them."""

    spec: FeatureSpec
    ratings: pd.DataFrame  # input columns + user_row, item_row (int32)
    user_ids: np.ndarray  # [U] int32, 0 = user outside the ID vocabulary
    user_cat: np.ndarray  # [U, len(user_fields)] int32
    item_ids: np.ndarray  # [I] int32
    item_cat: np.ndarray  # [I, len(item_fields)] int32
    item_multi: np.ndarray  # [I, len(genres)] float32
    user_index: pd.Index  # raw user ID -> row
    item_index: pd.Index  # raw item ID -> row

    def item_vocab_ids(self, raw_items: pd.Series | np.ndarray) -> np.ndarray:
        """Encoded item IDs (0 = outside the vocabulary) of raw item IDs; unknown raw IDs raise."""
        rows = self.item_index.get_indexer(np.asarray(raw_items))
        if (rows < 0).any():
            missing = np.asarray(raw_items)[rows < 0][:5].tolist()
            raise ValueError(f"Raw item IDs not in the encoded data (first few: {missing}).")
        return self.item_ids[rows]


def _lookup(vocab: list, values: pd.Series | np.ndarray) -> np.ndarray:
    """1-based position of each value in ``vocab``; 0 for unseen or missing values."""
    idx = pd.Index(vocab).get_indexer(pd.Series(values).to_numpy(dtype=object))
    return (idx + 1).astype(np.int32)


def _sorted_unique(values: pd.Series) -> list:
    return sorted(values.dropna().unique().tolist())


class FeatureEncoder:
    """Fits vocabularies on the training partition; anything unseen maps to index 0.

    Categorical user fields (gender, occupation, zip prefix) get one vocabulary
    each; age is bucketed with the fixed :data:`AGE_BUCKETS`. Release years are
    grouped into ``year_bucket_size``-year buckets spanning the training items'
    years; years outside that span fall into the nearest end bucket, since a
    newer release is closest to the newest known era. Genres unseen in
    training are dropped.

    Any other item column that holds a list per row (director or cast lists,
    keywords, tags) becomes extra content: its values join the genres in the
    multi-hot item vector as ``"column:value"`` entries, so every model that
    reads genres reads them too. Values seen on fewer than ``min_tag_items``
    training items are dropped, as are values unseen in training.
    """

    def __init__(self, year_bucket_size: int = 5, zip_prefix_len: int = 2, min_tag_items: int = 1) -> None:
        if year_bucket_size < 1 or zip_prefix_len < 1 or min_tag_items < 1:
            raise ValueError("year_bucket_size, zip_prefix_len and min_tag_items must be positive")
        self.year_bucket_size = year_bucket_size
        self.zip_prefix_len = zip_prefix_len
        self.min_tag_items = min_tag_items
        self.tag_columns: list[str] = []
        self.user_vocab: list[int] | None = None
        self.item_vocab: list[int] = []
        self.user_fields: list[str] = []
        self.cat_vocabs: dict[str, list[str]] = {}
        self.year_range: tuple[int, int] | None = None
        self.genres: list[str] = []

    @property
    def fitted(self) -> bool:
        return self.user_vocab is not None

    def _user_values(self, users: pd.DataFrame, field: str) -> pd.Series:
        if field == "zip_prefix":
            return zip_prefix(users["zip"], self.zip_prefix_len)
        source = {f: c for c, f in _USER_FIELDS}[field]
        return users[source].astype("str").str.strip().replace("", pd.NA)

    def fit(
        self,
        data: InteractionData,
        train_users: Iterable | None = None,
        train_items: Iterable | None = None,
    ) -> FeatureEncoder:
        """Learn ID, categorical, year and genre vocabularies from the training users and items."""
        users, items = data.users, data.items
        if train_users is not None:
            users = users[users["user"].isin(np.asarray(list(train_users), dtype=np.int64))]
        if train_items is not None:
            items = items[items["item"].isin(np.asarray(list(train_items), dtype=np.int64))]
        self.user_vocab = sorted(int(u) for u in users["user"])
        self.item_vocab = sorted(int(i) for i in items["item"])
        self.user_fields = [f for c, f in _USER_FIELDS if c in data.users.columns]
        self.cat_vocabs = {
            f: [str(v) for v in _sorted_unique(self._user_values(users, f))]
            for f in self.user_fields
            if f not in _FIXED_FIELDS
        }
        years = items["year"].dropna()
        size = self.year_bucket_size
        self.year_range = (int(years.min()) // size * size, int(years.max()) // size * size) if len(years) else None
        self.genres = sorted({g for row in items["genres"] for g in row})
        self.tag_columns = list_columns(data.items)
        for column in self.tag_columns:
            counts: dict[str, int] = {}
            for row in items[column]:
                for value in set(_tag_values(row)):
                    counts[value] = counts.get(value, 0) + 1
            self.genres += sorted(f"{column}:{v}" for v, n in counts.items() if n >= self.min_tag_items)
        return self

    @property
    def spec(self) -> FeatureSpec:
        """The :class:`FeatureSpec` of this fitted encoder."""
        if not self.fitted:
            raise RuntimeError("FeatureEncoder is not fitted; call fit() first")
        sizes = tuple(_FIXED_FIELDS.get(f) or len(self.cat_vocabs[f]) + 1 for f in self.user_fields)
        years = 1 if self.year_range is None else (self.year_range[1] - self.year_range[0]) // self.year_bucket_size + 2
        return FeatureSpec(
            user_fields=tuple(self.user_fields),
            user_vocab_sizes=sizes,
            item_fields=("year_bucket",),
            item_vocab_sizes=(years,),
            genres=tuple(self.genres),
            num_users=len(self.user_vocab or []) + 1,
            num_items=len(self.item_vocab) + 1,
        )

    def _year_bucket(self, year: pd.Series) -> np.ndarray:
        values = year.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        if self.year_range is None:
            return np.zeros(len(values), dtype=np.int32)
        lo, hi = self.year_range
        clipped = np.clip(np.nan_to_num(values, nan=lo), lo, hi + self.year_bucket_size - 1)
        bucket = (clipped - lo) // self.year_bucket_size + 1
        return np.where(np.isnan(values), 0, bucket).astype(np.int32)

    def transform(self, data: InteractionData, ratings: pd.DataFrame | None = None) -> EncodedData:
        """Encode every user and item of ``data``; ``ratings`` defaults to ``data.ratings``."""
        spec = self.spec
        users = data.users.sort_values("user", ignore_index=True)
        items = data.items.sort_values("item", ignore_index=True)
        user_index = pd.Index(users["user"].to_numpy(dtype=np.int64), name="user")
        item_index = pd.Index(items["item"].to_numpy(dtype=np.int64), name="item")

        cols = []
        for f in spec.user_fields:
            if f == "age_bucket":
                cols.append(age_bucket(users["age"]) if "age" in users.columns else np.zeros(len(users), np.int32))
            elif {c for c, g in _USER_FIELDS if g == f} <= set(users.columns):
                cols.append(_lookup(self.cat_vocabs[f], self._user_values(users, f)))
            else:
                cols.append(np.zeros(len(users), np.int32))
        user_cat = np.stack(cols, axis=1) if cols else np.zeros((len(users), 0), np.int32)

        genre_pos = {g: j for j, g in enumerate(spec.genres)}
        item_multi = np.zeros((len(items), len(spec.genres)), np.float32)
        for row, genres in enumerate(items["genres"]):
            for g in genres:
                if g in genre_pos:
                    item_multi[row, genre_pos[g]] = 1.0
        for column in self.tag_columns:
            if column not in items.columns:
                continue
            for row, values in enumerate(items[column]):
                for v in _tag_values(values):
                    j = genre_pos.get(f"{column}:{v}")
                    if j is not None:
                        item_multi[row, j] = 1.0

        frame = (data.ratings if ratings is None else ratings).copy()
        user_row = user_index.get_indexer(frame["user"].to_numpy())
        item_row = item_index.get_indexer(frame["item"].to_numpy())
        for name, rows in (("user", user_row), ("item", item_row)):
            if (rows < 0).any():
                bad = frame.loc[rows < 0, name].unique()[:5].tolist()
                raise ValueError(f"ratings reference {name} IDs {bad} that are not in data.{name}s")
        frame["user_row"] = user_row.astype(np.int32)
        frame["item_row"] = item_row.astype(np.int32)

        return EncodedData(
            spec=spec,
            ratings=frame,
            user_ids=_lookup(self.user_vocab or [], user_index.to_numpy()),
            user_cat=user_cat.astype(np.int32),
            item_ids=_lookup(self.item_vocab, item_index.to_numpy()),
            item_cat=self._year_bucket(items["year"])[:, None],
            item_multi=item_multi,
            user_index=user_index,
            item_index=item_index,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_dict` rebuilds this encoder."""
        if not self.fitted:
            raise RuntimeError("FeatureEncoder is not fitted; call fit() first")
        return {
            "year_bucket_size": self.year_bucket_size,
            "zip_prefix_len": self.zip_prefix_len,
            "user_vocab": list(self.user_vocab or []),
            "item_vocab": list(self.item_vocab),
            "user_fields": list(self.user_fields),
            "cat_vocabs": {k: list(v) for k, v in self.cat_vocabs.items()},
            "year_range": None if self.year_range is None else list(self.year_range),
            "genres": list(self.genres),
            "min_tag_items": self.min_tag_items,
            "tag_columns": list(self.tag_columns),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureEncoder:
        enc = cls(int(d["year_bucket_size"]), int(d["zip_prefix_len"]), int(d.get("min_tag_items", 1)))
        enc.user_vocab = [int(u) for u in d["user_vocab"]]
        enc.item_vocab = [int(i) for i in d["item_vocab"]]
        enc.user_fields = list(d["user_fields"])
        enc.cat_vocabs = {k: [str(x) for x in v] for k, v in d["cat_vocabs"].items()}
        enc.year_range = None if d["year_range"] is None else (int(d["year_range"][0]), int(d["year_range"][1]))
        enc.genres = list(d["genres"])
        enc.tag_columns = list(d.get("tag_columns", []))
        return enc


def list_columns(items: pd.DataFrame) -> list[str]:
    """Item columns beyond the schema whose every non-missing value is a list or tuple."""
    out = []
    for column in items.columns:
        if column in ITEM_COLUMNS:
            continue
        values = [v for v in items[column] if isinstance(v, (list, tuple)) or not pd.isna(v)]
        if values and all(isinstance(v, (list, tuple)) for v in values):
            out.append(str(column))
    return out


def _tag_values(row: object) -> list[str]:
    """The non-empty string values of one list cell (a missing cell has none)."""
    if not isinstance(row, (list, tuple)):
        return []
    return [str(v).strip() for v in row if str(v).strip()]
