"""Shared test helpers: random episodes and tiny models (no data files needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.models import MeLU, MetaEmb
from tfmetarec.types import CATEGORICAL, LIST, FieldSpec

USER_FIELDS = (
    FieldSpec("gender", CATEGORICAL, 3),
    FieldSpec("age", CATEGORICAL, 8),
    FieldSpec("occupation", CATEGORICAL, 22),
    FieldSpec("zip", CATEGORICAL, 11),
)
ITEM_FIELDS = (
    FieldSpec("year", CATEGORICAL, 6),
    FieldSpec("genres", LIST, 19, 4),
)
NUM_USERS = 5
NUM_ITEMS = 5  # ID vocabulary: the unknown item and four training items
TABLE_ROWS = 8  # ... plus three items known by content only


def random_item_table(seed: int = 0, rows: int = TABLE_ROWS) -> np.ndarray:
    """An item table for :data:`ITEM_FIELDS`: row 0 empty, each row a year and 1-4 genres."""
    rng = np.random.default_rng(1000 + seed)
    table = np.zeros((rows, 5), "int32")
    table[1:, 0] = rng.integers(1, 6, rows - 1)
    for r in range(1, rows):
        n = rng.integers(1, 5)
        table[r, 1:1 + n] = rng.choice(np.arange(1, 19), n, replace=False)
    return table


ITEM_TABLE = random_item_table()


def random_part(rng: np.random.Generator, tasks: int, rows: int, sizes=None, dtype="float32", items=None) -> dict:
    """One padded support or query part with ratings in 1..5 (items drawn from the whole table,
    or ``items [T]``: one item per task, as item tasks have)."""
    mask = np.ones((tasks, rows), dtype)
    if sizes is not None:
        mask = (np.arange(rows)[None, :] < np.asarray(sizes)[:, None]).astype(dtype)
    item_id = rng.integers(0, TABLE_ROWS, (tasks, rows)) if items is None else np.repeat(items[:, None], rows, 1)
    return {
        "user_id": rng.integers(0, NUM_USERS, (tasks, rows)).astype("int32"),
        "item_id": item_id.astype("int32"),
        "user_fields": np.stack([rng.integers(0, f.vocab_size, (tasks, rows)) for f in USER_FIELDS], -1).astype("int32"),
        "rating": rng.integers(1, 6, (tasks, rows)).astype(dtype),
        "mask": mask,
    }


def random_episode(seed=0, tasks=4, support=6, query=5, support_sizes=None, dtype="float32",
                   item_tasks=False) -> dict:
    """A padded episode; with ``item_tasks`` every row of a task rates the task's one item."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, TABLE_ROWS, tasks) if item_tasks else None
    return {
        "support": random_part(rng, tasks, support, support_sizes, dtype, items),
        "query": random_part(rng, tasks, query, None, dtype, items),
        "task_mask": np.ones(tasks, dtype),
    }


def tiny_melu(seed=0, dtype=None, hidden=(8, 4), **kwargs) -> MeLU:
    options = dict(embedding_dim=4, hidden_units=hidden, num_users=NUM_USERS, num_items=NUM_ITEMS, seed=seed,
                   dtype=dtype)
    model = MeLU(user_fields=USER_FIELDS, item_fields=ITEM_FIELDS, **{**options, **kwargs})
    model.set_item_table(ITEM_TABLE)
    return model


def tiny_metaemb(seed=0, dtype=None, hidden=(8, 4), **kwargs) -> MetaEmb:
    options = dict(embedding_dim=4, hidden_units=hidden, num_users=NUM_USERS, num_items=NUM_ITEMS, seed=seed,
                   dtype=dtype)
    model = MetaEmb(user_fields=USER_FIELDS, item_fields=ITEM_FIELDS, **{**options, **kwargs})
    model.set_item_table(ITEM_TABLE)
    return model


def write_melu_states(folder: Path, frames: dict[str, pd.DataFrame], shuffle_seed: int = 1) -> Path:
    """MeLU's state files (``<state>.json``: user -> item IDs, ``<state>_y.json``: user -> ratings,
    each user's rows in a seeded random order) for ``{state: ratings frame}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shuffle_seed)
    for state, frame in frames.items():
        items, ratings = {}, {}
        for user, rows in frame.groupby("user"):
            order = rng.permutation(len(rows))
            items[str(user)] = rows["item"].to_numpy()[order].tolist()
            ratings[str(user)] = rows["rating"].to_numpy()[order].tolist()
        (folder / f"{state}.json").write_text(json.dumps(items))
        (folder / f"{state}_y.json").write_text(json.dumps(ratings))
    return folder


def with_roles(frame: pd.DataFrame, partition: str, query: int = 10) -> pd.DataFrame:
    """Each user's last ``query`` rows (by item) are the query, the rest the support."""
    frame = frame.sort_values(["user", "item"]).copy()
    last = frame.groupby("user").cumcount(ascending=False) < query
    frame["role"] = np.where(last, "query", "support")
    frame["partition"] = partition
    return frame[["user", "item", "rating", "partition", "role"]]
