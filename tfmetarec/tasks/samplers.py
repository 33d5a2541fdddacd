"""Episode streams: random task batches for meta-training, ordered ones for evaluation.

Meta-training groups tasks into *buckets* of similar support size and pads (or trims) each
batch to its bucket's size, which cuts the work spent on padding while keeping a handful of
static shapes for XLA: powers of two, or buckets placed on the tasks' support sizes.
Evaluation cuts a task set, sorted by support size, into batches padded only to their own
largest task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.config import check_probability
from tfmetarec.data.features import EncodedData
from tfmetarec.tasks.episode import TaskSet, group_tasks, pad_episode
from tfmetarec.types import (EPISODE_SOURCE, FEATURE_KEYS, ITEM_ID, ITEM_ID_HIDDEN, MASK, QUERY, RATING, SUPPORT,
                             TASK_MASK, USER_FIELDS, USER_ID)


def support_buckets(max_support: int, smallest: int = 8) -> tuple[int, ...]:
    """``smallest``, then the powers of two above it, up to the first size >= ``max_support``
    (``smallest`` 8: 8, 16, 32, ...; 6: 6, 8, 16, ...)."""
    sizes = [int(smallest)]
    while sizes[-1] < max_support:
        sizes.append(1 << sizes[-1].bit_length())  # the next power of two
    return tuple(sizes)


def fitted_buckets(sizes: Sequence[int] | np.ndarray, count: int) -> tuple[int, ...]:
    """At most ``count`` support sizes that hold every one of ``sizes`` with the fewest padded
    rows: each size goes to the smallest bucket that holds it, and the buckets are chosen (by
    dynamic programming over the distinct sizes) to minimise the padding summed over ``sizes``.
    The largest bucket is ``max(sizes)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0 or count < 1:
        raise ValueError(f"fitted_buckets needs sizes and count >= 1; got {sizes.size} sizes, count {count}.")
    values, counts = np.unique(np.maximum(sizes, 1), return_counts=True)
    n = len(values)
    rows_before = np.concatenate([[0], np.cumsum(counts)])  # tasks among the first j distinct sizes
    sum_before = np.concatenate([[0], np.cumsum(counts * values)])

    def padding(lo: int, hi: int) -> np.ndarray:
        """Padding of the sizes ``values[lo[k]:hi]`` padded to ``values[hi - 1]`` (vector over ``lo``)."""
        return (rows_before[hi] - rows_before[lo]) * values[hi - 1] - (sum_before[hi] - sum_before[lo])

    best = padding(np.zeros(n, np.int64), np.arange(1, n + 1)).astype(float)[None, :]  # one bucket
    choice = [np.zeros(n, np.int64)]
    for _ in range(1, min(count, n)):
        row, arg = np.empty(n), np.zeros(n, np.int64)
        for hi in range(1, n + 1):
            lo = np.arange(hi)  # this bucket holds the distinct sizes lo..hi-1; the ones below cost best[-1]
            cost = np.concatenate([[0.0], best[-1][: hi - 1]]) + padding(lo, hi)
            arg[hi - 1] = int(np.argmin(cost))
            row[hi - 1] = cost[arg[hi - 1]]
        best = np.vstack([best, row])
        choice.append(arg)
    k = int(np.argmin(best[:, -1]))
    caps, hi = [], n
    while hi > 0:
        caps.append(int(values[hi - 1]))
        lo = int(choice[k][hi - 1]) if k > 0 else 0
        hi, k = lo, k - 1
    return tuple(sorted(caps))


def padded_share(sizes: Sequence[int] | np.ndarray, buckets: Sequence[int]) -> float:
    """Share of real rows when each of ``sizes`` is padded to the smallest of ``buckets`` that holds it."""
    sizes = np.asarray(sizes, dtype=np.int64)
    caps = np.asarray(buckets)[np.searchsorted(np.asarray(buckets), sizes, side="left")]
    return float(sizes.sum() / caps.sum())


def filled_bucket(sizes: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """Index of the largest bucket each of ``sizes`` fills (the smallest bucket for a smaller size):
    where a trimmed support goes."""
    return np.maximum(np.searchsorted(np.asarray(buckets), sizes, side="right") - 1, 0)


def episode_signature(encoded: EncodedData, hidden_ids: bool = False) -> dict:
    """``tf.TensorSpec`` structure of an episode (task and row axes dynamic); ``hidden_ids``: its
    parts carry ``item_id_hidden`` (a sampler with ID dropout)."""

    def part() -> dict:
        spec = {
            USER_ID: tf.TensorSpec([None, None], tf.int32),
            ITEM_ID: tf.TensorSpec([None, None], tf.int32),
            USER_FIELDS: tf.TensorSpec([None, None, encoded.user_fields.shape[1]], tf.int32),
            RATING: tf.TensorSpec([None, None], tf.float32),
            MASK: tf.TensorSpec([None, None], tf.float32),
        }
        if hidden_ids:
            spec[ITEM_ID_HIDDEN] = tf.TensorSpec([None, None], tf.float32)
        assert set(FEATURE_KEYS) <= set(spec)
        return spec

    return {SUPPORT: part(), QUERY: part(), TASK_MASK: tf.TensorSpec([None], tf.float32)}


class EpisodeSampler:
    """Endless random task batches for meta-training, each a pure function of the seed
    and its position in the stream.

    The support-size buckets are ``smallest_bucket`` (8 here; the CLI and ``TrainConfig`` default
    to 6) and the powers of two above it, up to the largest support, or, with
    ``fit_buckets``, as many buckets placed where the tasks' supports pad the fewest rows
    (:func:`fitted_buckets`). Each draw picks a bucket (in proportion to its tasks), then
    ``batch_size`` tasks from it, and splits every task's ratings afresh into a
    query of up to ``query_size`` rows (at most half the task) and the rest as
    support, capped at ``max_support``. Episode ``i`` depends only on ``(seed, i)``,
    so a run resumed at step ``i`` sees exactly the episodes an uninterrupted run
    would, however far a prefetching pipeline had read ahead.

    ``group`` > 1 stacks that many episodes of one bucket (``[group, T, ...]``) for a
    trainer that runs several meta-steps per compiled call.

    With ``min_real`` (the library's runs: 0.85) and supports padded (not trimmed), the buckets
    are fitted to the supports (as with ``fit_buckets``) and more are added until at least that
    share of the support rows is real.

    With ``trim_supports`` (the library's runs: on; the class pads by default, the stream a loop
    written before trimming expects), each task belongs to the largest bucket its support fills (the
    smallest for a support smaller than that) and every draw keeps a random subset of its
    support rows of the bucket's size: no support row is padding (but for supports under the
    smallest bucket), and the rows a draw leaves out change from draw to draw.

    ``id_dropout`` (DropoutNet's idea, for models with ID embeddings): in every drawn episode,
    each task's user ID is hidden (set to 0, the unknown user) with this probability, and so is each
    row's item ID embedding (``item_id_hidden``; the item's content stays); for item tasks, each
    task's item and each row's user. The model learns to score the users and items whose IDs it
    never trained on, as it must for new ones. The masks come from their own generator, so the
    tasks and rows drawn are the same with any ``id_dropout``.

    With ``fixed=True`` the ratings carry a ``role`` column (``support`` / ``query``, as
    in a published split) and every draw keeps each task's given split instead of
    drawing a new query (the support is still capped at ``max_support``).

    :meth:`state` (seed, position, fingerprint of the tasks and settings) is what a
    trainer saves in its checkpoints to prove a resumed run continues this stream.

    Sharding for distributed training: shard ``s`` of ``n`` of an episode is its tasks
    ``[s * B/n, (s + 1) * B/n)`` (``B`` = ``batch_size``). Every shard makes the same
    random draws as the whole episode but pads only its own tasks, so the shards of the
    ``n`` replicas (of all workers) are disjoint parts of exactly the episode one process
    would train on: the run does not depend on how many replicas or workers share it.
    """

    def __init__(
        self,
        encoded: EncodedData,
        ratings: pd.DataFrame,
        *,
        task_key: str = "user",
        batch_size: int = 32,
        query_size: int = 10,
        max_support: int = 128,
        bucketed: bool = True,
        seed: int = 0,
        fixed: bool = False,
        fit_buckets: bool = False,
        id_dropout: float = 0.0,
        trim_supports: bool = False,
        smallest_bucket: int = 8,
        min_real: float | None = None,
    ):
        if batch_size < 1 or query_size < 1 or max_support < 1 or smallest_bucket < 1:
            raise ValueError(f"batch_size, query_size, max_support and smallest_bucket must be >= 1; got {batch_size}, "
                             f"{query_size}, {max_support}, {smallest_bucket}.")
        check_probability("id_dropout", id_dropout)
        self.id_dropout = float(id_dropout)
        self.task_key = task_key
        if trim_supports and not bucketed:
            raise ValueError("trim_supports trims each support to a support bucket; it needs bucketed=True.")
        self.trim_supports = bool(trim_supports)
        self.encoded = encoded
        self.batch_size = batch_size
        self.query_size = query_size
        self.seed = int(seed)
        self.position = 0  # the next episode of the stream
        self.fixed = bool(fixed)
        ids, rows = group_tasks(encoded, ratings, task_key, "meta-training ratings")
        sizes = rows.sizes()
        self._is_query = None
        if self.fixed:
            if "role" not in ratings.columns:
                raise ValueError("fixed=True trains on given support/query tasks: the ratings need a 'role' column "
                                 "(support or query), as a published split gives.")
            keys = ratings[task_key].to_numpy()
            role = ratings["role"].to_numpy()[np.argsort(keys, kind="stable")]
            self._is_query = role == "query"
            bad = ~np.isin(role, ("support", "query"))
            if bad.any():
                raise ValueError(f"meta-training ratings: role must be 'support' or 'query'; got "
                                 f"{sorted(set(map(str, role[bad])))[:5]}.")
            n_query = np.add.reduceat(self._is_query.astype(np.int64), rows.offsets[:-1]) if len(sizes) else sizes
            n_query = np.where(sizes > 0, n_query, 0)
            keep = np.flatnonzero((n_query >= 1) & (sizes - n_query >= 1))
            if len(keep) == 0:
                raise ValueError("No meta-training task has both a support and a query row in its given roles.")
            supports = np.minimum(sizes[keep] - n_query[keep], max_support)
        else:
            keep = np.flatnonzero(sizes >= 2)
            if len(keep) == 0:
                raise ValueError("No meta-training task has the 2 ratings needed for a support and a query.")
            supports = np.minimum(sizes[keep] - np.minimum(query_size, sizes[keep] // 2), max_support)
        self.task_ids = ids[keep]
        self._supports = supports
        self._rows = rows
        self._tasks = keep
        if min_real is not None and not 0.0 < min_real <= 1.0:
            raise ValueError(f"min_real must be in (0, 1]; got {min_real}.")
        padded_floor = bucketed and not self.trim_supports and min_real is not None
        if bucketed:
            self.buckets = support_buckets(int(supports.max()), int(smallest_bucket))
            if fit_buckets or padded_floor:  # as many compiled shapes, placed on the supports
                self.buckets = fitted_buckets(supports, len(self.buckets))
            if padded_floor:  # and more, until the share of real rows reaches the floor
                while padded_share(supports, self.buckets) < min_real and len(self.buckets) < len(set(supports)):
                    self.buckets = fitted_buckets(supports, len(self.buckets) + 1)
            elif self.trim_supports and not fit_buckets and len(self.buckets) > 1 \
                    and self.buckets[-1] > supports.max():
                self.buckets = self.buckets[:-1]  # no support fills the top power of two
        else:
            self.buckets = (int(max(supports.max(), 1)),)
        self.max_support = max_support
        if self.trim_supports:
            which = filled_bucket(supports, self.buckets)
        else:
            if int(supports.max()) > self.buckets[-1]:
                raise ValueError(f"Support of {int(supports.max())} rows exceeds the largest bucket "
                                 f"{self.buckets[-1]}.")
            which = np.searchsorted(np.asarray(self.buckets), supports, side="left")
        self._members = [keep[which == b] for b in range(len(self.buckets))]
        counts = np.array([len(m) for m in self._members], dtype="float64")
        self._bucket_p = counts / counts.sum()
        self._fingerprint = self._digest(task_key, bucketed)

    def _digest(self, task_key: str, bucketed: bool) -> str:
        """A short hash of the tasks' rows and the settings that shape every episode."""
        digest = hashlib.sha256()
        settings = (task_key, self.batch_size, self.query_size, self.max_support, bucketed, self.fixed, self.buckets)
        if self.id_dropout:  # (absent at their defaults, so the default stream keeps its fingerprint)
            settings += (("id_dropout", self.id_dropout),)
        if self.trim_supports:
            settings += ("trim_supports",)
        digest.update(repr(settings).encode())
        for array in (np.asarray(self.task_ids), self._tasks, self._rows.offsets, self._rows.user_row,
                      self._rows.item_row, self._rows.rating,
                      np.zeros(0, bool) if self._is_query is None else self._is_query):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def state(self) -> dict[str, Any]:
        """The stream's seed, next position and fingerprint (tasks, rows and episode settings)."""
        return {"seed": self.seed, "position": self.position, "fingerprint": self._fingerprint}

    def __len__(self) -> int:
        return len(self._tasks)

    def support_sizes(self) -> np.ndarray:
        """Each task's support rows in a draw (its ratings less the query, at most ``max_support``;
        with ``trim_supports``, before trimming to its bucket)."""
        return self._supports.copy()

    def shard_tasks(self, shard: int = 0, num_shards: int = 1) -> range:
        """The task positions of an episode that shard ``shard`` of ``num_shards`` holds."""
        if num_shards < 1 or not 0 <= shard < num_shards:
            raise ValueError(f"shard must lie in [0, num_shards) with num_shards >= 1; got shard {shard} of "
                             f"{num_shards}.")
        if self.batch_size % num_shards:
            raise ValueError(f"The global batch of {self.batch_size} tasks does not split equally over "
                             f"{num_shards} replicas; use a batch_size that is a multiple of {num_shards}.")
        size = self.batch_size // num_shards
        return range(shard * size, (shard + 1) * size)

    def _draw(self, rng: np.random.Generator, b: int, keep: range | None = None) -> dict:
        members = self._members[b]
        chosen = rng.choice(members, self.batch_size, replace=len(members) < self.batch_size)
        most = min(self.buckets[b], self.max_support) if self.trim_supports else self.max_support
        keep = range(self.batch_size) if keep is None else keep
        support, query = [], []
        for position, t in enumerate(chosen):
            u, i, r = self._rows.task(int(t))
            perm = rng.permutation(len(u))  # drawn for every task, so each shard sees the same stream
            if position not in keep:
                continue
            if self._is_query is not None:
                lo, hi = self._rows.offsets[int(t)], self._rows.offsets[int(t) + 1]
                is_query = self._is_query[lo:hi][perm]
                q_idx, s_idx = perm[is_query][: self.query_size], perm[~is_query][:most]
            else:
                q = min(self.query_size, len(u) // 2)
                q_idx, s_idx = perm[:q], perm[q : q + most]
            support.append((u[s_idx], i[s_idx], r[s_idx]))
            query.append((u[q_idx], i[q_idx], r[q_idx]))
        episode = pad_episode(self.encoded, support, query, self.buckets[b], self.query_size)
        return self._hide_ids(rng, episode, keep) if self.id_dropout else episode

    def _hide_ids(self, rng: np.random.Generator, episode: dict, keep: range) -> dict:
        """ID dropout: hide the ID of each task's own user (or item, for item tasks) in all its
        rows, and the other side's ID row by row. Drawn for every task slot of the episode (so each
        shard hides exactly its part of what the whole episode hides) from a generator spawned off
        ``rng``, which leaves ``rng``'s own stream (the next episodes of a group) as it was."""
        masks = rng.spawn(1)[0]
        kept = slice(keep.start, keep.stop)
        hidden_task = masks.random(self.batch_size)[kept] < self.id_dropout
        for key in (SUPPORT, QUERY):
            part = episode[key]
            hidden_row = masks.random((self.batch_size, part[ITEM_ID].shape[1]))[kept] < self.id_dropout
            hidden_user, hidden_item = ((hidden_task[:, None], hidden_row) if self.task_key == "user"
                                        else (hidden_row, np.broadcast_to(hidden_task[:, None], hidden_row.shape)))
            part[ITEM_ID_HIDDEN] = hidden_item.astype("float32")
            part[USER_ID] = np.where(hidden_user, 0, part[USER_ID]).astype(part[USER_ID].dtype)
        return episode

    def sample(self, index: int | None = None, shard: int = 0, num_shards: int = 1) -> dict:
        """Episode ``index`` of the stream as numpy arrays (the next one when ``None``); with
        ``num_shards`` > 1, only shard ``shard`` of its tasks."""
        keep = self.shard_tasks(shard, num_shards)
        if index is None:
            index, self.position = self.position, self.position + 1
        rng = np.random.default_rng((self.seed, int(index)))
        return self._draw(rng, int(rng.choice(len(self.buckets), p=self._bucket_p)), keep)

    def sample_group(self, index: int, size: int, shard: int = 0, num_shards: int = 1) -> dict:
        """Group ``index`` of a stream of ``size``-episode groups: episodes of one bucket,
        stacked on a leading axis (``size == 1`` is :meth:`sample` with that axis added);
        with ``num_shards`` > 1, shard ``shard`` of every episode's tasks."""
        if size == 1:
            return tf.nest.map_structure(lambda a: a[None], self.sample(index, shard, num_shards))
        keep = self.shard_tasks(shard, num_shards)
        rng = np.random.default_rng((self.seed, int(index), int(size)))
        b = int(rng.choice(len(self.buckets), p=self._bucket_p))
        episodes = [self._draw(rng, b, keep) for _ in range(size)]
        return tf.nest.map_structure(lambda *parts: np.stack(parts), *episodes)

    def iterate(self, start: int = 0, group: int = 1, shard: int = 0, num_shards: int = 1) -> Iterator[dict]:
        """Episodes (or ``group``-sized stacks of them) from position ``start`` on; with
        ``num_shards`` > 1, shard ``shard`` of each."""
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}.")
        self.shard_tasks(shard, num_shards)
        index = int(start)
        while True:
            if group == 1:
                yield self.sample(index, shard, num_shards)
            else:
                yield self.sample_group(index, group, shard, num_shards)
            index += 1

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield self.sample()

    def dataset(self, prefetch: int = 2, start: int = 0, group: int = 1, shard: int = 0,
                num_shards: int = 1) -> tf.data.Dataset:
        """The stream from ``start`` as a ``tf.data`` pipeline (prefetched); with ``group`` > 1,
        stacks of ``group`` episodes; with ``num_shards`` > 1, shard ``shard`` of each."""
        self.shard_tasks(shard, num_shards)
        signature = episode_signature(self.encoded, hidden_ids=self.id_dropout > 0)
        if group > 1:
            signature = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype), signature)
        dataset = tf.data.Dataset.from_generator(
            lambda: self.iterate(start, group, shard, num_shards), output_signature=signature
        ).prefetch(prefetch)
        setattr(dataset, EPISODE_SOURCE, (self, int(start)))  # a trainer continues this sampler's stream
        return dataset


EVAL_CALL_ROWS = 512
"""What one more evaluation call must save in padded support rows to be made (see
:func:`eval_batches`): the fixed cost of a call, counted in rows. Measured on the
default MeLU + MAML without XLA, a call costs ~5 ms whatever its padding, so calls are what to
save (BENCHMARKS.md, "Padding of the evaluation batches")."""

EVAL_MIN_REAL = 0.85
"""The share of real support rows below which :func:`packed_cut` makes more calls."""


def packed_groups(sizes: np.ndarray, batch_size: int, call_rows: float = EVAL_CALL_ROWS) -> list[tuple[int, int]]:
    """Cut ascending ``sizes`` into contiguous groups of at most ``batch_size``, each padded to its
    own largest size, with the fewest padded slots plus ``call_rows`` per group (dynamic programming):
    ``[(lo, hi), ...]`` covering ``0..len(sizes)``."""
    n = len(sizes)
    sizes = np.asarray(sizes, dtype=np.float64)
    cost, start = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    for hi in range(1, n + 1):
        lo = np.arange(max(0, hi - batch_size), hi)
        total = cost[lo] + (hi - lo) * sizes[hi - 1] + call_rows
        best = int(np.argmin(total))
        cost[hi], start[hi] = total[best], lo[best]
    groups, hi = [], n
    while hi > 0:
        groups.append((int(start[hi]), hi))
        hi = int(start[hi])
    return groups[::-1]


def real_share(sizes: np.ndarray, groups: Sequence[tuple[int, int]]) -> float:
    """Share of the support slots of ``groups`` (cut from ascending ``sizes``) that hold a row; a
    task without support rows counts as one (it takes one slot wherever it goes)."""
    sizes = np.maximum(np.asarray(sizes, dtype=np.int64), 1)
    slots = sum((hi - lo) * int(sizes[hi - 1]) for lo, hi in groups)
    return float(sizes.sum() / slots) if slots else 1.0


def packed_cut(sizes: np.ndarray, batch_size: int, call_rows: float = EVAL_CALL_ROWS,
               min_real: float = EVAL_MIN_REAL) -> list[tuple[int, int]]:
    """:func:`packed_groups` of ascending ``sizes``, with the cost of a call halved until at least
    ``min_real`` of the support slots hold a row (always reached: at no call cost every group holds
    tasks of one size)."""
    groups = packed_groups(sizes, batch_size, call_rows)
    while real_share(sizes, groups) < min_real and call_rows > 0:
        call_rows = call_rows / 2 if call_rows > 1 else 0.0
        groups = packed_groups(sizes, batch_size, call_rows)
    return groups


def eval_batches(
    encoded: EncodedData,
    tasks: TaskSet,
    batch_size: int = 32,
    min_real: float = EVAL_MIN_REAL,
) -> Iterator[tuple[dict, np.ndarray]]:
    """Every task once, in batches of similar support size.

    Yields ``(episode, task_indices)``: the tasks sorted by support size, cut into groups of at
    most ``batch_size`` (:func:`packed_cut`: the fewest padded rows plus a cost per call, with at
    least ``min_real`` of the support slots real), each padded only to its own largest support
    and query, with no empty task slot. The cut of a task set is the same on every pass, so an
    XLA-compiled scorer compiles each of its shapes once.
    """
    if len(tasks) == 0:
        return
    s_sizes, q_sizes = tasks.support_sizes(), tasks.query_sizes()
    order = np.argsort(s_sizes, kind="stable")
    for lo, hi in packed_cut(s_sizes[order], batch_size, min_real=min_real):
        idx = order[lo:hi]
        support = [tasks.support.task(int(t)) for t in idx]
        query = [tasks.query.task(int(t)) for t in idx]
        cap, query_size = max(int(s_sizes[idx].max()), 1), max(int(q_sizes[idx].max()), 1)
        yield pad_episode(encoded, support, query, cap, query_size, None), idx
