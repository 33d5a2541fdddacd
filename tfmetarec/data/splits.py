"""Cold-start splits: existing/new users and items, and the four evaluation scenarios."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.data.schema import InteractionData

SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
METHODS = ("melu", "time")
DEFAULT_NEW_ITEM_YEAR = {
    "movielens-100k": 1997,
    "movielens-1m": 1998,
    "synthetic": 1998,
    "movielens-latest-small": 2015,
    "movielens-20m": 2013,  # ratings up to 2015
    "movielens-25m": 2017,  # ratings up to 2019
}


@dataclass(frozen=True)
class SplitConfig:
    """Settings of :func:`cold_start_split`.

    ``method="melu"`` marks items released in or after ``new_item_year`` as new
    (``None`` picks the dataset's entry in ``DEFAULT_NEW_ITEM_YEAR``) and a
    random ``new_user_fraction`` of users as new. ``method="time"`` marks users
    and items as new when their first rating comes after the ``time_quantile``
    of all users' first-rating times.
    """

    method: str = "melu"
    min_user_ratings: int = 13
    max_user_ratings: int = 100
    new_item_year: int | None = None
    new_user_fraction: float = 0.2
    time_quantile: float = 0.8
    query_size: int = 10
    min_support: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.min_user_ratings <= self.max_user_ratings:
            raise ValueError("need 0 < min_user_ratings <= max_user_ratings")
        if not 0.0 < self.new_user_fraction < 1.0 or not 0.0 < self.time_quantile < 1.0:
            raise ValueError("new_user_fraction and time_quantile must lie strictly between 0 and 1")
        if self.query_size < 1 or self.min_support < 1:
            raise ValueError("query_size and min_support must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SplitConfig keys {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True, eq=False)
class ColdStartSplit:
    """Who is new, the meta-training ratings and one rating frame per scenario."""

    config: SplitConfig
    existing_users: np.ndarray
    new_users: np.ndarray
    existing_items: np.ndarray
    new_items: np.ndarray
    meta_train: pd.DataFrame
    partitions: dict[str, pd.DataFrame]

    def counts(self) -> pd.DataFrame:
        """Distinct users, items and ratings of meta_train and of every scenario."""
        frames = {"meta_train": self.meta_train, **{s: self.partitions[s] for s in SCENARIOS}}
        rows = {k: (f["user"].nunique(), f["item"].nunique(), len(f)) for k, f in frames.items()}
        return pd.DataFrame.from_dict(rows, orient="index", columns=["users", "items", "ratings"])

    def save(self, directory: str | Path) -> None:
        """Write ``counts.csv`` and ``split.json`` (config, ID lists, warm hold-out pairs)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.counts().to_csv(out / "counts.csv", index_label="partition")
        warm = self.partitions["warm"]
        doc = {
            "config": self.config.to_dict(),
            "existing_users": self.existing_users.tolist(),
            "new_users": self.new_users.tolist(),
            "existing_items": self.existing_items.tolist(),
            "new_items": self.new_items.tolist(),
            "warm": [warm["user"].tolist(), warm["item"].tolist()],
        }
        (out / "split.json").write_text(json.dumps(doc), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, data: InteractionData) -> ColdStartSplit:
        """Rebuild a saved split over ``data`` (the dataset it was made from)."""
        doc = json.loads((Path(directory) / "split.json").read_text(encoding="utf-8"))
        keys = ("existing_users", "new_users", "existing_items", "new_items")
        ids = {k: np.asarray(doc[k], dtype=np.int64) for k in keys}
        warm = pd.MultiIndex.from_arrays([np.asarray(v, dtype=np.int64) for v in doc["warm"]])
        return _assemble(data, SplitConfig.from_dict(doc["config"]), **ids, warm_pairs=warm)


def _resolve_year(data: InteractionData, config: SplitConfig) -> int:
    if config.new_item_year is not None:
        return config.new_item_year
    if data.name not in DEFAULT_NEW_ITEM_YEAR:
        raise ValueError(f"no default new_item_year for dataset {data.name!r}; set SplitConfig.new_item_year")
    return DEFAULT_NEW_ITEM_YEAR[data.name]


def _active(data: InteractionData, config: SplitConfig) -> pd.DataFrame:
    """Ratings of the users with min..max ratings."""
    n = data.ratings.groupby("user")["item"].transform("size")
    return data.ratings[(n >= config.min_user_ratings) & (n <= config.max_user_ratings)]


def _pairs(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([frame["user"].to_numpy(), frame["item"].to_numpy()])


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user", "item"], ignore_index=True)


def _full_tasks(frame: pd.DataFrame, need: int) -> pd.DataFrame:
    """Only the users with at least ``need`` ratings in ``frame``."""
    return frame[frame.groupby("user")["item"].transform("size") >= need]


def _warm_holdout(pool: pd.DataFrame, config: SplitConfig, rng: np.random.Generator) -> pd.DataFrame:
    """``query_size`` ratings of every user with enough of them: random (melu) or latest (time)."""
    need = config.query_size + config.min_support
    pool = _full_tasks(pool, need)
    if config.method == "time":
        key = pool["timestamp"].to_numpy(dtype="float64") * -1.0
    else:
        key = rng.random(len(pool))
    ranked = pool.assign(_key=key).sort_values(["user", "_key", "item"], kind="stable")
    held = ranked[ranked.groupby("user").cumcount() < config.query_size]
    return held.drop(columns="_key")


def _assemble(
    data: InteractionData,
    config: SplitConfig,
    existing_users: np.ndarray,
    new_users: np.ndarray,
    existing_items: np.ndarray,
    new_items: np.ndarray,
    warm_pairs: pd.MultiIndex | None = None,
    rng: np.random.Generator | None = None,
) -> ColdStartSplit:
    ratings = _active(data, config)
    old_u, new_u = ratings["user"].isin(existing_users), ratings["user"].isin(new_users)
    old_i, new_i = ratings["item"].isin(existing_items), ratings["item"].isin(new_items)
    pool = ratings[old_u & old_i]
    if warm_pairs is None:
        warm = _warm_holdout(pool, config, rng or np.random.default_rng(config.seed))
        warm_pairs = _pairs(warm)
    held = _pairs(pool).isin(warm_pairs)
    need = config.query_size + config.min_support
    partitions = {
        "warm": _tidy(pool[held]),
        "user_cold": _tidy(_full_tasks(ratings[new_u & old_i], need)),
        "item_cold": _tidy(_full_tasks(ratings[old_u & new_i], need)),
        "user_item_cold": _tidy(_full_tasks(ratings[new_u & new_i], need)),
    }
    return ColdStartSplit(
        config=config,
        existing_users=np.sort(np.asarray(existing_users, dtype=np.int64)),
        new_users=np.sort(np.asarray(new_users, dtype=np.int64)),
        existing_items=np.sort(np.asarray(existing_items, dtype=np.int64)),
        new_items=np.sort(np.asarray(new_items, dtype=np.int64)),
        meta_train=_tidy(pool[~held]),
        partitions=partitions,
    )


def cold_start_split(data: InteractionData, config: SplitConfig = SplitConfig()) -> ColdStartSplit:
    """Split ``data`` into meta-training ratings and the four cold-start scenarios.

    Users keep only if they have ``min_user_ratings``..``max_user_ratings``
    ratings. ``warm`` holds ``query_size`` existing-item ratings of each
    existing user (removed from ``meta_train``, which supplies their support);
    ``user_cold``/``item_cold``/``user_item_cold`` pair new users and/or new
    items, keeping only users with ``query_size + min_support`` ratings there.
    """
    if config.method == "time" and not data.has_timestamps:
        raise ValueError(
            f"{data.name}: the time-based split orders ratings by time, but the ratings have no 'timestamp' "
            "column; add one or use SplitConfig(method='melu')."
        )
    rng = np.random.default_rng(config.seed)
    ratings = _active(data, config)
    users = np.unique(ratings["user"].to_numpy())
    all_items = data.items["item"].to_numpy(dtype=np.int64)
    if config.method == "melu":
        if "year" not in data.items.columns:
            raise ValueError(f"{data.name}: the MeLU split makes items new by release year, but the items have no "
                             "'year' column; add one or use SplitConfig(method='time').")
        year = _resolve_year(data, config)
        is_new = (data.items["year"] >= year).fillna(False).to_numpy(dtype=bool)
        new_items = all_items[is_new]
        new_users = rng.permutation(users)[: int(round(config.new_user_fraction * len(users)))]
    else:
        first_user = ratings.groupby("user")["timestamp"].min()
        cutoff = float(np.quantile(first_user.to_numpy(), config.time_quantile))
        new_users = first_user.index[first_user.to_numpy() > cutoff].to_numpy()
        first_item = data.ratings.groupby("item")["timestamp"].min()
        new_items = first_item.index[first_item.to_numpy() > cutoff].to_numpy()
    existing_users = np.setdiff1d(users, new_users)
    existing_items = np.setdiff1d(all_items, new_items)
    return _assemble(data, config, existing_users, new_users, existing_items, new_items, rng=rng)
