"""benchmarks/new_item_signal.py's kNN correction against a plain loop over raters (no TensorFlow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("new_item_signal", ROOT / "benchmarks" / "new_item_signal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference(train, support, shape, kappa, shrinkage):
    users, items = shape
    rows = list(zip(*train)) + list(zip(*support))
    mean = np.mean([r for _, _, r in rows])
    item_mean = np.full(items, mean)
    for i in range(items):
        got = [r for _, j, r in rows if j == i]
        item_mean[i] = (sum(got) + shrinkage * mean) / (len(got) + shrinkage)
    user_mean = np.array([np.mean([r for v, _, r in rows if v == u]) if any(v == u for v, _, _ in rows) else mean
                          for u in range(users)])
    centred = np.zeros(shape)
    rated = {u: set() for u in range(users)}
    for u, i, r in rows:
        centred[u, i] = r - user_mean[u]
        rated[u].add(i)
    correction = np.zeros(shape)
    for u in range(users):
        for i in range(items):
            num = den = 0.0
            for v, j, r in zip(*support):
                if j != i or v == u:
                    continue
                co = len(rated[u] & rated[v])
                cos = centred[u] @ centred[v] / (np.linalg.norm(centred[u]) * np.linalg.norm(centred[v]) + 1e-9)
                s = cos * co / (co + kappa)
                num += s * (r - user_mean[v])
                den += abs(s)
            correction[u, i] = num / (den + 1.0)
    return item_mean, correction


def test_the_knn_correction_is_the_shrunk_similarity_vote_of_a_new_items_first_raters():
    rng = np.random.default_rng(3)
    users, items = 7, 9
    pairs = [(u, i) for u in range(1, users) for i in range(1, 6) if rng.random() < 0.7]
    train = tuple(np.array(x) for x in zip(*[(u, i, float(rng.integers(1, 6))) for u, i in pairs]))
    new = [(u, i, float(rng.integers(1, 6))) for u in range(1, users) for i in (6, 7, 8) if rng.random() < 0.5]
    support = tuple(np.array(x) for x in zip(*new))
    script = _script()
    item_mean, correction = script.knn_scores(train, support, (users, items), kappa=2.0)
    want_mean, want_correction = _reference(train, support, (users, items), 2.0, script.ITEM_MEAN_SHRINKAGE)
    np.testing.assert_allclose(item_mean, want_mean, rtol=1e-9)
    np.testing.assert_allclose(correction, want_correction, atol=1e-5)
    assert np.abs(correction[:, 6:]).max() > 0.05  # the new items' raters do vote
    assert not correction[:, :6].any()  # items nobody rated in a support get no correction


def test_a_catalogue_too_large_for_the_dense_knn_is_refused_before_allocating():
    rows = (np.array([1]), np.array([1]), np.array([4.0]))
    with pytest.raises(ValueError, match=r"138,000 users x 27,000 items need ~.* GiB"):
        _script().knn_scores(rows, rows, (138_000, 27_000), kappa=5.0)
