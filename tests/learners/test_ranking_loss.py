"""Ranking-aware query losses: values, masks, gradients, the learners' mix and its serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import random_episode, tiny_melu

from tfmetarec.learners import MAML, Reptile
from tfmetarec.learners.losses import task_listwise_softmax, task_mse, task_pairwise_logistic
from tfmetarec.objectives import QueryLoss


def test_pairwise_loss_values_and_masks():
    rating = tf.constant([[5.0, 3.0, 1.0, 4.0]])
    mask = tf.constant([[1.0, 1.0, 1.0, 0.0]])  # the 4th row is padding
    right = tf.constant([[10.0, 0.0, -10.0, -50.0]])
    wrong = tf.constant([[-10.0, 0.0, 10.0, 50.0]])
    assert float(task_pairwise_logistic(right, rating, mask)[0]) < 1e-3
    assert float(task_pairwise_logistic(wrong, rating, mask)[0]) > 9.0
    # padding never counts: changing its prediction leaves the loss unchanged
    moved = tf.constant([[10.0, 0.0, -10.0, 99.0]])
    np.testing.assert_allclose(task_pairwise_logistic(moved, rating, mask), task_pairwise_logistic(right, rating, mask))
    # pairs weigh by gain difference: (5 > 1) weighs 2^5 - 2, (3 > 1) weighs 2^3 - 2
    pred = tf.constant([[0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(task_pairwise_logistic(pred, rating, mask), [np.log(2.0)], rtol=1e-6)
    assert float(task_pairwise_logistic(pred, tf.constant([[3.0, 3.0, 3.0, 3.0]]), mask)[0]) == 0.0  # no ordered pair
    listwise_right = float(task_listwise_softmax(right, rating, mask)[0])
    assert listwise_right < float(task_listwise_softmax(wrong, rating, mask)[0])


def test_learners_mix_the_ranking_loss_and_keep_it_when_saved(tmp_path):
    episode = random_episode(seed=3, tasks=3, support=4, query=6)
    learner = MAML(tiny_melu(seed=2), inner_steps=1, inner_lr=0.1)
    base, _ = learner.meta_loss(episode)
    pred = learner(episode)
    query = episode["query"]
    mse = float(tf.reduce_mean(task_mse(pred, query["rating"], query["mask"])))
    rank = float(tf.reduce_mean(task_pairwise_logistic(pred, query["rating"], query["mask"])))
    assert float(base) == pytest.approx(mse, rel=1e-5)
    mixed_learner = MAML(tiny_melu(seed=2), inner_steps=1, inner_lr=0.1,
                         query_loss=QueryLoss(ranking_weight=0.25, ranking_loss="pairwise"))
    mixed, _ = mixed_learner.meta_loss(episode)
    assert float(mixed) == pytest.approx(0.75 * mse + 0.25 * rank, rel=1e-5)
    grads, _ = mixed_learner.meta_gradients(episode)
    assert all(np.isfinite(g.numpy()).all() for g in grads) and any(np.abs(g.numpy()).sum() > 0 for g in grads)
    mixed_learner.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.query_loss == mixed_learner.query_loss
    assert (again.query_loss.ranking_weight, again.query_loss.ranking_loss) == (0.25, "pairwise")
    assert float(again.meta_loss(episode)[0]) == pytest.approx(float(mixed), rel=1e-5)
    with pytest.raises(ValueError, match="ranking_weight must be >= 0 and <= 1"):
        QueryLoss(ranking_weight=1.5)
    with pytest.raises(ValueError, match="ranking_loss must be one of"):
        QueryLoss(0.5, "pointwise")
    with pytest.raises(ValueError, match="query_loss"):  # a dict becomes a QueryLoss, checked the same way
        MAML(tiny_melu(), query_loss={"ranking_weight": 2.0})
    reptile = Reptile(tiny_melu(seed=2), inner_steps=1, inner_lr=0.1, query_loss={"ranking_weight": 1.0,
                                                                               "ranking_loss": "listwise"})
    assert np.isfinite(reptile.meta_gradients(episode)[1]["loss"].numpy())
