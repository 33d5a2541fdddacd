"""Shared test helpers: random episodes and tiny models (no data files needed)."""

from __future__ import annotations

import numpy as np

from tfmetarec.models import MeLU

USER_VOCABS = (3, 8, 22, 11)
ITEM_VOCABS = (6,)
GENRES = 19


def random_part(rng: np.random.Generator, tasks: int, rows: int, sizes=None, dtype="float32") -> dict:
    """One padded support or query part with ratings in 1..5."""
    mask = np.ones((tasks, rows), dtype)
    if sizes is not None:
        mask = (np.arange(rows)[None, :] < np.asarray(sizes)[:, None]).astype(dtype)
    return {
        "user_id": rng.integers(0, 5, (tasks, rows)).astype("int32"),
        "item_id": rng.integers(0, 5, (tasks, rows)).astype("int32"),
        "user_cat": np.stack([rng.integers(0, v, (tasks, rows)) for v in USER_VOCABS], -1).astype("int32"),
        "item_cat": np.stack([rng.integers(0, v, (tasks, rows)) for v in ITEM_VOCABS], -1).astype("int32"),
        "item_multi": (rng.random((tasks, rows, GENRES)) < 0.2).astype(dtype),
        "rating": rng.integers(1, 6, (tasks, rows)).astype(dtype),
        "mask": mask,
    }


def random_episode(seed=0, tasks=4, support=6, query=5, support_sizes=None, dtype="float32") -> dict:
    rng = np.random.default_rng(seed)
    return {
        "support": random_part(rng, tasks, support, support_sizes, dtype),
        "query": random_part(rng, tasks, query, None, dtype),
        "task_mask": np.ones(tasks, dtype),
    }


def tiny_melu(seed=0, dtype=None, hidden=(8, 4), **kwargs) -> MeLU:
    return MeLU(USER_VOCABS, ITEM_VOCABS, GENRES, embedding_dim=4, hidden_units=hidden, seed=seed, dtype=dtype, **kwargs)
