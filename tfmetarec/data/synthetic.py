"""A synthetic cold-start dataset whose structure is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfmetarec.data.schema import MOVIELENS_GENRES, InteractionData

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

GENRES = MOVIELENS_GENRES  # the synthetic items carry MovieLens-like genres

NEW_YEARS = (1998, 2000)  # inclusive range of "recent" release years
START_TIME = 946_684_800  # 2000-01-01 UTC
EXACT_CELLS = 20_000_000
"""Above this many users x items, ``method="auto"`` draws who rates what by sampling in
chunks of users instead of ranking a dense ``[users, items]`` matrix."""
CHUNK_USERS = 50_000


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


def _item_vectors(rng: np.random.Generator, factors: np.ndarray, bias: np.ndarray, dim: int) -> np.ndarray:
    """``[items, dim]`` float32: informative first half (factors and bias mapped, plus noise), noise second half."""
    informative = max(1, dim // 2)
    source = np.concatenate([factors / np.sqrt(factors.shape[1]), bias[:, None] / 0.3], axis=1)
    mapped = source @ rng.normal(size=(source.shape[1], informative)) + 0.3 * rng.normal(size=(len(factors), informative))
    noise = rng.normal(size=(len(factors), dim - informative))
    return np.concatenate([mapped, noise], axis=1).astype(np.float32)


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
    method: str = "auto",
    vector_dim: int = 0,
) -> InteractionData:
    """Ratings from clustered user tastes and item factors, with partly informative features.

    A user's taste is its cluster centroid plus an individual deviation of
    comparable size, so a user's own ratings say more than its features. User
    occupation, age and zip region follow the cluster with probability
    ``1 - feature_noise``; item genres follow the item factors. A fraction
    ``new_item_fraction`` of items is released in 1998-2000, the rest earlier.
    Ratings are ``clip(round(3 + <u, i> + biases + noise), 1, 5)``.

    Who rates what: each user's items are drawn without replacement in proportion to
    ``exp(popularity + taste for recent releases)``. ``method="exact"`` ranks a dense
    Gumbel-perturbed ``[users, items]`` matrix; ``"sampled"`` draws the same way (with
    replacement, keeping first occurrences, which is sampling without replacement) in
    chunks of users, so memory grows with the ratings, not users x items: tens of
    millions of ratings fit in a few GB. ``"auto"`` is exact up to
    :data:`EXACT_CELLS` cells. The two methods make different (equally distributed) data.

    With ``vector_dim`` > 0 every item gets a ``vector`` column (a vector field, as a text
    embedding would be): its first half is a random linear map of the item's factors and bias
    plus noise (what a good content encoder would see), the second half pure noise. The
    vectors come from their own random stream: the ratings are those made without them.
    """
    lo, hi = ratings_per_user
    if not (num_users > 0 and num_items > 0 and num_clusters > 0 and latent_dim > 0):
        raise ValueError("num_users, num_items, num_clusters and latent_dim must be positive")
    if not 1 <= lo <= hi:
        raise ValueError(f"ratings_per_user must satisfy 1 <= low <= high, got {ratings_per_user}")
    if not 0.0 <= new_item_fraction <= 1.0 or not 0.0 <= feature_noise <= 1.0:
        raise ValueError("new_item_fraction and feature_noise must lie in [0, 1]")
    if method not in ("auto", "exact", "sampled"):
        raise ValueError(f"method must be 'auto', 'exact' or 'sampled', got {method!r}")
    if method == "auto":
        method = "exact" if num_users * num_items <= EXACT_CELLS else "sampled"
    rng = np.random.default_rng(seed)

    cluster = rng.integers(0, num_clusters, num_users)
    centroids = rng.normal(size=(num_clusters, latent_dim))
    user_f = centroids[cluster] + 0.8 * rng.normal(size=(num_users, latent_dim))
    item_f = rng.normal(size=(num_items, latent_dim))
    user_bias = rng.normal(0.0, 0.3, num_users)
    item_bias = rng.normal(0.0, 0.3, num_items)
    users = _users(rng, cluster, num_clusters, feature_noise)
    items = _items(rng, item_f, feature_noise, new_item_fraction)
    if vector_dim < 0:
        raise ValueError(f"vector_dim must be >= 0, got {vector_dim}")
    if vector_dim:
        items["vector"] = list(_item_vectors(np.random.default_rng([seed, 7]), item_f, item_bias, vector_dim))

    # Which items each user rates: popularity skew, plus a per-user taste for recent releases.
    is_new = items["year"].to_numpy(dtype=np.int64) >= NEW_YEARS[0]
    if method == "sampled":
        u_idx, i_idx, rating, ts = _sampled_ratings(rng, lo, hi, is_new, user_f, item_f, user_bias, item_bias,
                                                    noise)
        order = np.lexsort((i_idx, u_idx, ts))  # by time, then user, then item
        ratings = pd.DataFrame({"user": u_idx[order].astype(np.int64) + 1, "item": i_idx[order].astype(np.int64) + 1,
                                "rating": rating[order], "timestamp": ts[order]})
        del order, u_idx, i_idx, rating, ts
        return InteractionData("synthetic", ratings, users, items)
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


def _sampled_ratings(
    rng: np.random.Generator, lo: int, hi: int, is_new: np.ndarray, user_f: np.ndarray, item_f: np.ndarray,
    user_bias: np.ndarray, item_bias: np.ndarray, noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The exact method's model, drawn in chunks of users: ``(user, item)`` indices (int32),
    ratings (float32) and timestamps (int64); memory grows with the ratings only."""
    num_users, num_items = len(user_f), len(item_f)
    popularity = rng.normal(0.0, 1.0, num_items)
    recent_taste = rng.normal(0.0, 1.0, num_users)
    counts = rng.integers(lo, min(hi, num_items) + 1, num_users).clip(max=num_items)
    u_idx, i_idx = _sampled_items(rng, popularity, recent_taste, is_new, counts)
    day = 86_400
    horizon = 3 * 365 * day
    start = rng.uniform(0.0, 0.85 * horizon, num_users)
    end = np.minimum(start + rng.uniform(30 * day, 540 * day, num_users), horizon)
    release = np.where(is_new, rng.uniform(0.65 * horizon, 0.95 * horizon, num_items), 0.0)
    rating = np.empty(len(u_idx), np.float32)
    ts = np.empty(len(u_idx), np.int64)
    step = CHUNK_USERS * max(hi, 1)  # a bounded number of ratings at a time: no [ratings, latent] blow-up
    scale = np.sqrt(user_f.shape[1])
    for a in range(0, len(u_idx), step):
        u, i = u_idx[a:a + step], i_idx[a:a + step]
        score = np.einsum("rd,rd->r", user_f[u], item_f[i]) / scale
        raw = 3.0 + 0.9 * score + user_bias[u] + item_bias[i] + rng.normal(0.0, noise, len(u))
        rating[a:a + step] = np.clip(np.round(raw), 1, 5)
        when = start[u] + rng.random(len(u)) * (end - start)[u]
        when = np.maximum(when, release[i] + rng.uniform(0.0, 14 * day, len(u)))
        ts[a:a + step] = START_TIME + np.floor(when).astype(np.int64)
    return u_idx, i_idx, rating, ts


def _sampled_items(
    rng: np.random.Generator, popularity: np.ndarray, recent_taste: np.ndarray, is_new: np.ndarray,
    counts: np.ndarray, max_rounds: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[u]`` distinct items per user ``u``, drawn without replacement with weights
    ``exp(popularity + recent_taste[u] * is_new)``, users in chunks (``(user, item)`` int32
    arrays, users in order). A user keeps fewer items only if ``max_rounds`` redraws cannot
    find enough distinct ones (a catalogue barely larger than its ratings)."""
    groups = [np.flatnonzero(~is_new), np.flatnonzero(is_new)]
    weights = [np.exp(popularity[g]) for g in groups]
    cdfs = [np.cumsum(w) / w.sum() if len(w) else w for w in weights]
    mass = [float(w.sum()) for w in weights]
    users_out, items_out = [], []
    num_items = len(popularity)
    for lo in range(0, len(counts), CHUNK_USERS):
        want = counts[lo:lo + CHUNK_USERS].astype(np.int64)
        taste = recent_taste[lo:lo + CHUNK_USERS]
        new_w = mass[1] * np.exp(taste)
        p_new = new_w / (mass[0] + new_w) if len(groups[1]) else np.zeros(len(want))
        users = np.arange(len(want))
        kept_u, kept_i = np.zeros(0, np.int64), np.zeros(0, np.int64)
        for _ in range(max_rounds):
            have = np.bincount(kept_u, minlength=len(want))
            short = users[have < want]
            if not len(short):
                break
            draws = np.maximum((want[short] - have[short]) * 3 // 2 + 8, 1)
            u = np.repeat(short, draws)
            new = rng.random(len(u)) < p_new[u]
            pick = np.empty(len(u), np.int64)
            for g, mask in ((0, ~new), (1, new)):
                if mask.any():
                    at = np.minimum(np.searchsorted(cdfs[g], rng.random(int(mask.sum())), side="right"),
                                    len(groups[g]) - 1)
                    pick[mask] = groups[g][at]
            # keep each (user, item) once, first draw first: earlier rounds' items come first
            u_all = np.concatenate([kept_u, u])
            i_all = np.concatenate([kept_i, pick])
            _, first = np.unique(u_all * num_items + i_all, return_index=True)
            first.sort()
            u_all, i_all = u_all[first], i_all[first]
            order = np.argsort(u_all, kind="stable")
            u_all, i_all = u_all[order], i_all[order]
            starts = np.searchsorted(u_all, users)
            rank = np.arange(len(u_all)) - starts[u_all]
            keep = rank < want[u_all]
            kept_u, kept_i = u_all[keep], i_all[keep]
        users_out.append((kept_u + lo).astype(np.int32))
        items_out.append(kept_i.astype(np.int32))
    return np.concatenate(users_out), np.concatenate(items_out)


def user_clusters(num_users: int = 600, num_clusters: int = 6, seed: int = 0) -> np.ndarray:
    """The taste cluster of every synthetic user (row ``u - 1`` for user ``u``), for diagnostics."""
    return np.random.default_rng(seed).integers(0, num_clusters, num_users)
