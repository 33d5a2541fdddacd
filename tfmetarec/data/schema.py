"""The one in-memory schema every dataset loader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RATING_COLUMNS = ("user", "item", "rating", "timestamp")
USER_COLUMNS = ("user",)
USER_OPTIONAL = ("gender", "age", "occupation", "zip")
ITEM_COLUMNS = ("item", "title", "year", "genres")


class DataFormatError(ValueError):
    """Malformed input data; the message names the file and line when known."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{what} frame lacks column(s) {missing}; has {list(frame.columns)}")


def _ints(series: pd.Series, what: str) -> pd.Series:
    if series.isna().any():
        raise DataFormatError(f"{what} contains missing values")
    return series.astype("int64")


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Ratings plus user and item side information in the library's one schema.

    ``ratings``: user, item (int64), rating (float32), timestamp (int64 unix
    seconds), one row per (user, item). ``users``: user (int64) and optionally
    gender, age, occupation, zip. ``items``: item (int64), title (str), year
    (nullable Int64), genres (a list of str per row), and any further columns;
    one holding a list per row (cast, directors, keywords) is item content for
    :class:`~tfmetarec.data.features.FeatureEncoder`. Construction checks the
    columns, normalises the dtypes and verifies that every rated user and item
    has a row in ``users`` / ``items``.
    """

    name: str
    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    def __post_init__(self) -> None:
        ratings, users, items = self.validate()
        object.__setattr__(self, "ratings", ratings)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)

    def validate(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Check the frames and return copies with normalised dtypes."""
        _require(self.ratings, RATING_COLUMNS, f"{self.name}: ratings")
        _require(self.users, USER_COLUMNS, f"{self.name}: users")
        _require(self.items, ITEM_COLUMNS, f"{self.name}: items")

        r = self.ratings.reset_index(drop=True).copy()
        for col in ("user", "item", "timestamp"):
            r[col] = _ints(r[col], f"{self.name}: ratings.{col}")
        r["rating"] = r["rating"].astype("float32")
        if not np.isfinite(r["rating"].to_numpy()).all():
            raise DataFormatError(f"{self.name}: ratings.rating contains NaN or infinite values")
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
        it["title"] = it["title"].astype("str")
        it["year"] = it["year"].astype("Int64")
        if not all(isinstance(g, list) for g in it["genres"]):
            raise DataFormatError(f"{self.name}: items.genres must hold a list of str per row")

        for key, frame, what in (("user", u, "users"), ("item", it, "items")):
            unknown = ~r[key].isin(frame[key])
            if unknown.any():
                bad = r.loc[unknown, key].unique()[:5].tolist()
                raise DataFormatError(f"{self.name}: rated {key} IDs {bad} have no row in {what}")
        return r, u, it

    def __repr__(self) -> str:
        return (
            f"InteractionData(name={self.name!r}, ratings={len(self.ratings)}, "
            f"users={len(self.users)}, items={len(self.items)})"
        )
