"""Catalogue-wide retrieval: after adapting to a task, rank every item, not only the query.

For each task the learner adapts on the support, then all items of the encoded
catalogue are ranked for the task's user; items already in the support are left
out. The query items rated ``like_threshold`` or more are the relevant ones, and
``Recall@k`` and ``nDCG@k`` (binary gains) are averaged over the tasks that have
any. ``coverage@k`` is the share of the catalogue that reaches some top-k list.

Two ways to rank, with the same result:

* models whose score is a dot product of a user and an item vector
  (``model.dot_product_scores``, e.g. :class:`~tfmetarec.models.TwoTower`) and
  learners whose state holds adapted user-side parameters only: the item vectors
  are computed once and keras-rs' ``BruteForceRetrieval`` finds the top items for
  each adapted user vector;
* every other pair: the learner scores the full catalogue for each task in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.metrics import LIKE_THRESHOLD
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.functional import graph_function
from tfmetarec.tasks.episode import TaskSet
from tfmetarec.tasks.samplers import eval_batches
from tfmetarec.types import ITEM_ID, QUERY, SUPPORT, USER_FIELDS, USER_ID

USER_KEYS = (USER_ID, USER_FIELDS)


def catalogue_features(encoded: EncodedData) -> dict[str, np.ndarray]:
    """Item inputs of every item of the catalogue (item table rows ``1..R-1``): ``[R - 1]``;
    position ``p`` is table row ``p + 1``."""
    return {ITEM_ID: np.arange(1, encoded.num_table_items, dtype=np.int32)}


def uses_vector_search(learner: MetaLearner) -> bool:
    """Whether ``learner``'s rankings can come from a dot-product top-k search."""
    model = learner.model
    if not model.dot_product_scores or not learner.gradient_based:
        return False
    adapted = set(learner.adapted_parameters())
    item_side = set(model.param_groups().get("item_tower", ())) | {"global_bias"}
    return bool(adapted) and not adapted & item_side


def _user_rows(query: dict) -> dict[str, tf.Tensor]:
    """Each task's user inputs (its first query row): ``[T, 1, ...]``."""
    return {k: query[k][:, :1] for k in USER_KEYS if k in query}


def _scores_by_learner(learner: MetaLearner, state, query, catalogue, chunk: int) -> np.ndarray:
    users = _user_rows(query)
    tasks = int(query[USER_ID].shape[0])
    out = []
    total = len(catalogue[ITEM_ID])
    for lo in range(0, total, chunk):
        items = {k: tf.constant(v[lo : lo + chunk]) for k, v in catalogue.items()}
        width = int(items[ITEM_ID].shape[0])
        features = {k: tf.broadcast_to(v[None], [tasks, *v.shape]) for k, v in items.items()}
        features.update({k: tf.broadcast_to(v, [tasks, width, *v.shape[2:]]) for k, v in users.items()})
        out.append(learner.score(state, features).numpy())
    return np.concatenate(out, axis=1)


def _vector_search(learner: MetaLearner, state, query, item_vectors, depth: int) -> np.ndarray:
    from keras_rs.layers import BruteForceRetrieval

    params = {**learner.model.variable_values(), **state}
    users = learner.model.search_query(params, _user_rows(query))[:, 0]  # [T, D + 1]
    search = BruteForceRetrieval(k=depth, return_scores=False)
    search.update_candidates(item_vectors)
    return np.asarray(search(users))


def rank_catalogue(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    k: int = 20,
    batch_size: int = 32,
    vector_search: bool | None = None,
    chunk: int = 1024,
) -> list[np.ndarray]:
    """Each task's top-``k`` item rows over the whole catalogue (its support items
    left out), best first, in ``tasks`` order.

    ``vector_search`` forces (True) or forbids (False) the keras-rs top-k search;
    by default it is used when :func:`uses_vector_search` allows it.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    search = uses_vector_search(learner) if vector_search is None else vector_search
    if search and not uses_vector_search(learner):
        raise ValueError(f"{type(learner).__name__} on {type(learner.model).__name__} cannot use a dot-product "
                         "search: it needs model.dot_product_scores and an adapted state of user-side parameters.")
    catalogue = catalogue_features(encoded)
    size = len(catalogue[ITEM_ID])
    k = min(k, size)
    adapt = graph_function(learner.adapt, reduce_retracing=True)  # packed batches: one graph for every shape
    item_vectors = None
    if search:
        features = {name: tf.constant(v) for name, v in catalogue.items()}
        item_vectors = learner.model.search_item_vectors(learner.model.variable_values(), features)
    out: list = [None] * len(tasks)
    for episode, idx in eval_batches(encoded, tasks, batch_size):
        state = adapt(episode[SUPPORT])
        query = episode[QUERY]
        seen = [set(tasks.support.task(int(t))[1].tolist()) for t in idx]
        depth = min(size, k + max(len(s) for s in seen))
        if search:
            ranked = _vector_search(learner, state, query, item_vectors, depth)
        else:
            scores = _scores_by_learner(learner, state, query, catalogue, chunk)
            ranked = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        rows = np.asarray(ranked) + 1  # catalogue position -> item table row
        for row, t in enumerate(idx):
            out[int(t)] = np.array([int(i) for i in rows[row] if int(i) not in seen[row]][:k], dtype=np.int64)
    return out


def catalogue_retrieval(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 32,
    like_threshold: float = LIKE_THRESHOLD,
    vector_search: bool | None = None,
    chunk: int = 1024,
) -> dict[str, float]:
    """Recall@k, nDCG@k (``cat_nDCG@k``) and ``cat_coverage@k`` of each task's
    catalogue ranking (:func:`rank_catalogue`), plus ``retrieval_tasks``: the
    number of tasks with a relevant query item."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {list(ks)}.")
    ranked = rank_catalogue(learner, encoded, tasks, max(ks), batch_size, vector_search, chunk)
    size = encoded.num_table_items - 1
    recalls: dict[int, list[float]] = {k: [] for k in ks}
    ndcgs: dict[int, list[float]] = {k: [] for k in ks}
    shown: dict[int, set] = {k: set() for k in ks}
    for t, top in enumerate(ranked):
        _, items, ratings = tasks.query.task(t)
        relevant = set(items[ratings >= like_threshold].tolist())
        for k in ks:
            shown[k].update(top[:k].tolist())
        if not relevant:
            continue
        hits = np.array([i in relevant for i in top.tolist()], dtype=float)
        for k in ks:
            got = hits[:k]
            recalls[k].append(got.sum() / len(relevant))
            ideal = np.sum(1.0 / np.log2(np.arange(2, min(k, len(relevant)) + 2)))
            ndcgs[k].append(float(np.sum(got / np.log2(np.arange(2, len(got) + 2)))) / ideal)
    out: dict[str, float] = {"retrieval_tasks": len(recalls[ks[0]])}
    for k in ks:
        out[f"Recall@{k}"] = float(np.mean(recalls[k])) if recalls[k] else float("nan")
        out[f"cat_nDCG@{k}"] = float(np.mean(ndcgs[k])) if ndcgs[k] else float("nan")
        out[f"cat_coverage@{k}"] = len(shown[k]) / size
    return out
