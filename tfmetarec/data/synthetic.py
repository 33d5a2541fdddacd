"""A synthetic cold-start dataset whose structure is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfmetarec.data.schema import InteractionData

OCCUPATIONS = (
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

NEW_YEARS = (1998, 2000)  # inclusive range of "recent" release years
START_TIME = 946_684_800  # 2000-01-01 UTC


def _noisy_choice(rng: np.random.Generator, truth: np.ndarray, options: int, noise: float) -> np.ndarray:
    """``truth`` with probability ``1 - noise``, a uniform draw from ``options`` otherwise."""
    flip = rng.random(truth.shape) < noise
    return np.where(flip, rng.integers(0, options, truth.shape), truth)


def _users(rng: np.random.Generator, cluster: np.ndarray, num_clusters: int, noise: float) -> pd.DataFrame:
    n = len(cluster)
    occ_of_cluster = rng.permutation(len(OCCUPATIONS))[np.arange(num_clusters) % len(OCCUPATIONS)]
    occupation = _noisy_choice(rng, occ_of_cluster[cluster], len(OCCUPATIONS), noise)
    age_of_cluster = rng.integers(18, 61, num_clusters)
    age = np.where(
        rng.random(n) < noise,
        rng.integers(10, 74, n),
        np.clip(age_of_cluster[cluster] + rng.integers(-3, 4, n), 7, 73),
    )
    male = rng.random(n) < rng.uniform(0.2, 0.8, num_clusters)[cluster]
    region = _noisy_choice(rng, cluster % 10, 10, noise)
    zips = [f"{r}{z:04d}" for r, z in zip(region, rng.integers(0, 10_000, n), strict=True)]
    return pd.DataFrame(
        {
            "user": np.arange(1, n + 1, dtype=np.int64),
            "gender": np.where(male, "M", "F"),
            "age": age.astype(np.int64),
            "occupation": np.asarray(OCCUPATIONS)[occupation],
            "zip": zips,
        }
    )


def _items(rng: np.random.Generator, factors: np.ndarray, feature_noise: float, new_fraction: float) -> pd.DataFrame:
    n, dim = factors.shape
    directions = rng.normal(size=(len(GENRES), dim))
    affinity = factors @ directions.T / np.sqrt(dim) + feature_noise * rng.normal(size=(n, len(GENRES)))
    has = affinity > np.quantile(affinity, 0.88)  # about two genres per item
    has[np.arange(n), affinity.argmax(1)] = True
    is_new = np.zeros(n, dtype=bool)
    is_new[rng.permutation(n)[: int(round(new_fraction * n))]] = True
    old_year = np.clip(1997 - np.floor(rng.exponential(9.0, n)), 1930, 1997)
    new_year = rng.integers(NEW_YEARS[0], NEW_YEARS[1] + 1, n)
    year = np.where(is_new, new_year, old_year).astype(np.int64)
    return pd.DataFrame(
        {
            "item": np.arange(1, n + 1, dtype=np.int64),
            "title": [f"Synthetic Movie {i} ({y})" for i, y in zip(range(1, n + 1), year, strict=True)],
            "year": pd.array(year, dtype="Int64"),
            "genres": [[GENRES[g] for g in np.flatnonzero(row)] for row in has],
        }
    )


def make_synthetic(
    num_users: int = 600,
    num_items: int = 400,
    num_clusters: int = 6,
    latent_dim: int = 8,
    ratings_per_user: tuple[int, int] = (20, 60),
    noise: float = 0.35,
    feature_noise: float = 0.3,
    new_item_fraction: float = 0.25,
    seed: int = 0,
) -> InteractionData:
    """Ratings from clustered user tastes and item factors, with partly informative features.

    A user's taste is its cluster centroid plus an individual deviation of
    comparable size, so a user's own ratings say more than its features. User
    occupation, age and zip region follow the cluster with probability
    ``1 - feature_noise``; item genres follow the item factors. A fraction
    ``new_item_fraction`` of items is released in 1998-2000, the rest earlier.
    Ratings are ``clip(round(3 + <u, i> + biases + noise), 1, 5)``.
    """
    lo, hi = ratings_per_user
    if not (num_users > 0 and num_items > 0 and num_clusters > 0 and latent_dim > 0):
        raise ValueError("num_users, num_items, num_clusters and latent_dim must be positive")
    if not 1 <= lo <= hi:
        raise ValueError(f"ratings_per_user must satisfy 1 <= low <= high, got {ratings_per_user}")
    if not 0.0 <= new_item_fraction <= 1.0 or not 0.0 <= feature_noise <= 1.0:
        raise ValueError("new_item_fraction and feature_noise must lie in [0, 1]")
    rng = np.random.default_rng(seed)

    cluster = rng.integers(0, num_clusters, num_users)
    centroids = rng.normal(size=(num_clusters, latent_dim))
    user_f = centroids[cluster] + 0.8 * rng.normal(size=(num_users, latent_dim))
    item_f = rng.normal(size=(num_items, latent_dim))
    user_bias = rng.normal(0.0, 0.3, num_users)
    item_bias = rng.normal(0.0, 0.3, num_items)
    users = _users(rng, cluster, num_clusters, feature_noise)
    items = _items(rng, item_f, feature_noise, new_item_fraction)

    # Which items each user rates: popularity skew, plus a per-user taste for recent releases.
    is_new = items["year"].to_numpy(dtype=np.int64) >= NEW_YEARS[0]
    log_w = rng.normal(0.0, 1.0, num_items)[None, :] + np.outer(rng.normal(0.0, 1.0, num_users), is_new)
    keys = log_w + rng.gumbel(size=(num_users, num_items))
    order = np.argsort(-keys, axis=1)
    counts = rng.integers(lo, min(hi, num_items) + 1, num_users).clip(max=num_items)
    taken = np.arange(num_items)[None, :] < counts[:, None]
    u_idx = np.repeat(np.arange(num_users), counts)
    i_idx = order[taken]

    score = (user_f[u_idx] * item_f[i_idx]).sum(1) / np.sqrt(latent_dim)
    raw = 3.0 + 0.9 * score + user_bias[u_idx] + item_bias[i_idx] + rng.normal(0.0, noise, len(u_idx))
    rating = np.clip(np.round(raw), 1, 5).astype(np.float32)

    # Users are active in windows over a three-year timeline; recent releases
    # come out late in it and are only rated after their release.
    day = 86_400
    horizon = 3 * 365 * day
    start = rng.uniform(0.0, 0.85 * horizon, num_users)
    end = np.minimum(start + rng.uniform(30 * day, 540 * day, num_users), horizon)
    release = np.where(is_new, rng.uniform(0.65 * horizon, 0.95 * horizon, num_items), 0.0)
    when = start[u_idx] + rng.random(len(u_idx)) * (end - start)[u_idx]
    when = np.maximum(when, release[i_idx] + rng.uniform(0.0, 14 * day, len(u_idx)))
    ts = START_TIME + np.floor(when).astype(np.int64)
    ratings = pd.DataFrame(
        {
            "user": u_idx.astype(np.int64) + 1,
            "item": i_idx.astype(np.int64) + 1,
            "rating": rating,
            "timestamp": ts.astype(np.int64),
        }
    ).sort_values(["timestamp", "user", "item"], kind="stable", ignore_index=True)
    return InteractionData("synthetic", ratings, users, items)


def user_clusters(num_users: int = 600, num_clusters: int = 6, seed: int = 0) -> np.ndarray:
    """The taste cluster of every synthetic user (row ``u - 1`` for user ``u``), for diagnostics."""
    return np.random.default_rng(seed).integers(0, num_clusters, num_users)
