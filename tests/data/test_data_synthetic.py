"""The synthetic generator: determinism, rating spread and informative side information."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import make_synthetic
from tfmetarec.data.synthetic import user_clusters


@pytest.fixture(scope="module")
def data():
    return make_synthetic()


def test_deterministic_per_seed(data) -> None:
    again = make_synthetic()
    pd.testing.assert_frame_equal(data.ratings, again.ratings)
    pd.testing.assert_frame_equal(data.users, again.users)
    pd.testing.assert_frame_equal(data.items, again.items)
    other = make_synthetic(seed=1)
    assert not data.ratings.equals(other.ratings)


def test_schema_and_ratings(data) -> None:
    assert data.name == "synthetic" and len(data.users) == 600 and len(data.items) == 400
    r = data.ratings
    assert r["rating"].dtype == np.float32 and r["user"].dtype == np.int64
    assert set(r["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert r["rating"].value_counts(normalize=True).min() > 0.05  # a real spread, not all 3s
    per_user = r.groupby("user").size()
    assert per_user.min() >= 20 and per_user.max() <= 60
    assert not r.duplicated(["user", "item"]).any()
    assert r["timestamp"].is_monotonic_increasing
    assert r.groupby("item").size().max() > 3 * r.groupby("item").size().median()  # popularity skew


def test_items_years_and_genres(data) -> None:
    year = data.items["year"]
    assert year.notna().all()
    assert 0.2 <= (year >= 1998).mean() <= 0.3
    assert (year < 1998).sum() > 0
    assert all(len(g) >= 1 for g in data.items["genres"])
    assert len({g for row in data.items["genres"] for g in row}) >= 10


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = pd.crosstab(a, b).to_numpy().astype(float)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def test_features_reveal_clusters_partly(data) -> None:
    cluster = user_clusters()
    occupation = data.users["occupation"].to_numpy()
    majority = pd.Series(occupation).groupby(cluster).agg(lambda s: s.value_counts().index[0])
    assert majority.nunique() == 6  # every cluster has its own typical occupation
    share = np.mean(occupation == majority.to_numpy()[cluster])
    assert 0.55 < share < 0.9  # informative but noisy
    rng = np.random.default_rng(0)
    chance = max(_mutual_information(rng.permutation(cluster), occupation) for _ in range(5))
    assert _mutual_information(cluster, occupation) > 5 * chance


def test_ratings_depend_on_cluster(data) -> None:
    # users of one cluster agree on items more than users of different clusters
    r = data.ratings.assign(cluster=user_clusters()[data.ratings["user"].to_numpy() - 1])
    by = r.pivot_table(index="item", columns="cluster", values="rating", aggfunc="mean")
    spread_between = by.std(axis=1).mean()
    assert spread_between > 0.4


def test_small_and_invalid_arguments() -> None:
    small = make_synthetic(num_users=30, num_items=25, ratings_per_user=(5, 8), seed=4)
    assert small.ratings.groupby("user").size().between(5, 8).all()
    with pytest.raises(ValueError):
        make_synthetic(ratings_per_user=(10, 5))
