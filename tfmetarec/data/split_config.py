"""Split settings and scenario names, importable without numpy, pandas or TensorFlow."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

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
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"the split seed must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SplitConfig keys {sorted(unknown)}")
        return cls(**d)
