"""Tasks (one user, or one item) with support and query sets, padded to fixed shapes.

A :class:`TaskSet` stores variable-length tasks compactly (CSR layout: flat
arrays plus offsets). :func:`pad_episode` turns a group of tasks into one
fixed-shape *episode*: a nested dict of numpy arrays

``{"support": {features..., "rating", "mask"}, "query": {...}, "task_mask"}``

with support ``[T, S]`` and query ``[T, Q]`` rows, which is what the models and
learners consume. Features are small integers: the user ID index, the user's
field indices and the item's row in the model's item table (the model gathers
the item's content itself). Fixed shapes keep XLA from recompiling; masks say
which rows and tasks are real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfmetarec.data.features import EncodedData
from tfmetarec.types import ITEM_ID, MASK, QUERY, RATING, SUPPORT, TASK_MASK, USER_FIELDS, USER_ID

TASK_KEYS = ("user", "item")


@dataclass(frozen=True)
class Rows:
    """Flat (user_row, item_row, rating) arrays of many tasks, split by ``offsets``."""

    user_row: np.ndarray
    item_row: np.ndarray
    rating: np.ndarray
    offsets: np.ndarray  # [T + 1]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def task(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.offsets[t], self.offsets[t + 1]
        return self.user_row[lo:hi], self.item_row[lo:hi], self.rating[lo:hi]

    @staticmethod
    def from_groups(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Rows:
        sizes = np.array([len(g[0]) for g in groups], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def cat(i: int, dtype: str) -> np.ndarray:
            if not groups:
                return np.zeros(0, dtype)
            return np.concatenate([g[i] for g in groups]).astype(dtype)

        return Rows(cat(0, "int32"), cat(1, "int32"), cat(2, "float32"), offsets)


@dataclass(frozen=True)
class TaskSet:
    """A set of tasks, each with a support and a query set.

    ``task_ids`` are the raw user (or item) IDs the tasks belong to.
    """

    name: str
    task_key: str
    task_ids: np.ndarray
    support: Rows
    query: Rows

    def __len__(self) -> int:
        return len(self.task_ids)

    def support_sizes(self) -> np.ndarray:
        return self.support.sizes()

    def query_sizes(self) -> np.ndarray:
        return self.query.sizes()

    def num_ratings(self) -> int:
        return int(self.support.offsets[-1] + self.query.offsets[-1])


def _joined_rows(parts: Sequence[Rows]) -> Rows:
    """The tasks of ``parts`` one after the other as one :class:`Rows`."""
    starts = np.cumsum([0] + [int(r.offsets[-1]) for r in parts[:-1]])
    offsets = np.concatenate([[0]] + [r.offsets[1:] + s for r, s in zip(parts, starts)]).astype(np.int64)
    return Rows(*(np.concatenate([getattr(r, f) for r in parts]) for f in ("user_row", "item_row", "rating")),
                offsets)


def join_task_sets(sets: Sequence[TaskSet], name: str = "joined") -> TaskSet:
    """The tasks of ``sets`` (one task key) one after the other: task ``i`` of ``sets[k]`` is task
    ``sum(len(s) for s in sets[:k]) + i``; for one pass over several sets."""
    if not sets:
        raise ValueError("join_task_sets needs at least one task set.")
    keys = {s.task_key for s in sets}
    if len(keys) > 1:
        raise ValueError(f"Cannot join task sets of different task keys {sorted(keys)} "
                         f"({', '.join(s.name for s in sets)}).")
    return TaskSet(name, sets[0].task_key, np.concatenate([s.task_ids for s in sets]),
                   _joined_rows([s.support for s in sets]), _joined_rows([s.query for s in sets]))


def _rows_of(encoded: EncodedData, ratings: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user row, item table row, rating) of a ratings frame; unknown IDs are a clear error."""
    for col in ("user", "item", "rating"):
        if col not in ratings.columns:
            raise KeyError(f"{where}: ratings need a {col!r} column; got {list(ratings.columns)}.")
    users = encoded.user_index.get_indexer(ratings["user"].to_numpy())
    items = pd.Index(encoded.item_raw_ids[1:]).get_indexer(ratings["item"].to_numpy())
    items = np.where(items < 0, -1, items + 1)
    for name, rows, raw in (("user", users, ratings["user"]), ("item", items, ratings["item"])):
        if (rows < 0).any():
            bad = raw.to_numpy()[rows < 0][:5].tolist()
            raise KeyError(f"{where}: {name} IDs {bad} have no feature row in the encoded data.")
    values = ratings["rating"].to_numpy(dtype="float32")
    if not np.isfinite(values).all():
        bad_at = np.flatnonzero(~np.isfinite(values))[:5].tolist()
        raise ValueError(f"{where}: ratings contain NaN or infinite labels at rows {bad_at}.")
    return users.astype("int32"), items.astype("int32"), values


def group_tasks(
    encoded: EncodedData, ratings: pd.DataFrame, task_key: str = "user", name: str = "tasks"
) -> tuple[np.ndarray, Rows]:
    """Group ratings into one row set per task (per user or per item), sorted by ID."""
    if task_key not in TASK_KEYS:
        raise ValueError(f"task_key must be one of {TASK_KEYS}, got {task_key!r}.")
    users, items, values = _rows_of(encoded, ratings, name)
    keys = ratings[task_key].to_numpy()
    order = np.argsort(keys, kind="stable")
    ids, starts = np.unique(keys[order], return_index=True)
    offsets = np.concatenate([starts, [len(keys)]]).astype(np.int64)
    return ids, Rows(users[order], items[order], values[order], offsets)


def build_tasks(
    encoded: EncodedData,
    ratings: pd.DataFrame,
    *,
    task_key: str = "user",
    query_size: int = 10,
    min_support: int = 1,
    max_support: int | None = None,
    support_ratings: pd.DataFrame | None = None,
    seed: int = 0,
    name: str = "tasks",
    fixed: bool = False,
) -> TaskSet:
    """Split each task's ratings into a random query and the rest as support.

    With ``support_ratings`` (the warm scenario), the query comes from
    ``ratings`` and the support is the task's rows in ``support_ratings``.
    Tasks with fewer than ``min_support`` support rows are dropped; a support
    larger than ``max_support`` is subsampled at random. Seeded and
    deterministic. No query row ever appears in its task's support.

    With ``fixed=True`` the ``role`` column of ``ratings`` (``support`` / ``query``, as in a
    published split) gives each row's part and nothing is drawn; a task without support rows
    then takes its rows of ``support_ratings`` (when given) that are not in its query.
    """
    roles = None
    if fixed:
        if "role" not in ratings.columns:
            raise KeyError(f"{name}: fixed tasks need a 'role' column (support or query); got "
                           f"{list(ratings.columns)}.")
        roles = ratings["role"].astype(str).to_numpy()
        bad = ~np.isin(roles, ("support", "query"))
        if bad.any():
            raise ValueError(f"{name}: role must be 'support' or 'query'; got {sorted(set(roles[bad].tolist()))[:5]}.")
    elif query_size < 1:
        raise ValueError(f"query_size must be >= 1, got {query_size}.")
    rng = np.random.default_rng(seed)
    ids, rows = group_tasks(encoded, ratings, task_key, name)
    is_query = None if roles is None else roles[np.argsort(ratings[task_key].to_numpy(), kind="stable")] == "query"
    extra: dict = {}
    if support_ratings is not None:
        s_ids, s_rows = group_tasks(encoded, support_ratings, task_key, f"{name} support")
        extra = {k: s_rows.task(i) for i, k in enumerate(s_ids.tolist())}
    empty = (np.zeros(0, "int32"), np.zeros(0, "int32"), np.zeros(0, "float32"))
    kept, sup, qry = [], [], []
    for t, task_id in enumerate(ids.tolist()):
        u, i, r = rows.task(t)
        if is_query is not None:
            q = is_query[rows.offsets[t]: rows.offsets[t + 1]]
            q_idx, own = np.flatnonzero(q), np.flatnonzero(~q)
            borrow = len(own) == 0 and task_id in extra
        else:
            perm = rng.permutation(len(u))
            q_idx, own = perm[:query_size], perm[query_size:]
            borrow = support_ratings is not None
        s = (u[own], i[own], r[own])
        if borrow:
            s = extra.get(task_id, empty)
            # a pair that is in the query never also counts as support
            clash = np.isin(s[1], i[q_idx]) if task_key == "user" else np.isin(s[0], u[q_idx])
            s = tuple(a[~clash] for a in s)
        if len(s[0]) < min_support or len(q_idx) == 0:
            continue
        kept.append(task_id)
        sup.append(_capped(s, max_support, rng))
        qry.append((u[q_idx], i[q_idx], r[q_idx]))
    return TaskSet(name, task_key, np.asarray(kept), Rows.from_groups(sup), Rows.from_groups(qry))


def _capped(rows: tuple, max_support: int | None, rng: np.random.Generator) -> tuple:
    """A support's ``(users, items, ratings)``, at most ``max_support`` rows drawn in order."""
    if max_support is None or len(rows[0]) <= max_support:
        return rows
    keep = np.sort(rng.choice(len(rows[0]), max_support, replace=False))
    return tuple(a[keep] for a in rows)


def _part(
    encoded: EncodedData,
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    size: int,
    batch: int,
) -> dict[str, np.ndarray]:
    """Pad a list of per-task (user_row, item_row, rating) to ``[batch, size]``: the
    ID index and field indices of each row's user, and the item's table row."""
    user_row = np.zeros((batch, size), "int32")
    item_row = np.zeros((batch, size), "int32")
    rating = np.zeros((batch, size), "float32")
    mask = np.zeros((batch, size), "float32")
    for t, (u, i, r) in enumerate(groups):
        n = len(u)
        if n > size:
            raise ValueError(f"A task has {n} rows, more than the padded size {size}.")
        user_row[t, :n], item_row[t, :n], rating[t, :n], mask[t, :n] = u, i, r, 1.0
    return {
        USER_ID: encoded.user_ids[user_row],
        ITEM_ID: item_row,
        USER_FIELDS: encoded.user_fields[user_row],
        RATING: rating,
        MASK: mask,
    }


def pad_episode(
    encoded: EncodedData,
    support: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    query: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    support_size: int,
    query_size: int,
    batch_size: int | None = None,
) -> dict:
    """One fixed-shape episode from per-task support and query rows.

    ``batch_size`` pads the task axis with empty tasks (``task_mask`` 0).
    """
    batch = len(support) if batch_size is None else batch_size
    if len(support) != len(query) or len(support) > batch:
        raise ValueError(f"Got {len(support)} supports and {len(query)} queries for {batch} task slots.")
    task_mask = np.zeros(batch, "float32")
    task_mask[: len(support)] = 1.0
    return {
        SUPPORT: _part(encoded, support, support_size, batch),
        QUERY: _part(encoded, query, query_size, batch),
        TASK_MASK: task_mask,
    }


def limit_support(tasks: TaskSet, size: int, seed: int = 0, min_tasks_support: int | None = None) -> TaskSet:
    """Keep a random ``size`` of each task's support rows (queries unchanged).

    Tasks with fewer than ``min_tasks_support`` (default ``size``) support
    rows are dropped, so curves over several sizes can use the same tasks.
    """
    need = size if min_tasks_support is None else min_tasks_support
    rng = np.random.default_rng(seed)
    keep, sup, qry = [], [], []
    for t in range(len(tasks)):
        u, i, r = tasks.support.task(t)
        if len(u) < need:
            continue
        pick = np.sort(rng.choice(len(u), size, replace=False)) if size < len(u) else np.arange(len(u))
        keep.append(tasks.task_ids[t])
        sup.append((u[pick], i[pick], r[pick]))
        qry.append(tasks.query.task(t))
    return TaskSet(f"{tasks.name}[support={size}]", tasks.task_key, np.asarray(keep), Rows.from_groups(sup), Rows.from_groups(qry))
