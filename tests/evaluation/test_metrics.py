import keras_rs
import numpy as np
import pytest

from tfmetarec.evaluation.metrics import average_metrics, ndcg_at_k, task_metrics


def test_ndcg_perfect_and_reversed_rankings():
    true = np.array([5.0, 4.0, 3.0, 1.0])
    assert ndcg_at_k(true, true, 3) == pytest.approx(1.0)
    reversed_pred = -true
    worst = ndcg_at_k(reversed_pred, true, 1)
    assert worst == pytest.approx((2**1 - 1) / (2**5 - 1))


def test_ndcg_hand_computed_value():
    pred = np.array([0.9, 0.8, 0.1])
    true = np.array([3.0, 5.0, 4.0])
    gains = np.array([7.0, 31.0, 15.0])
    dcg = gains[0] + gains[1] / np.log2(3) + gains[2] / 2
    idcg = 31 + 15 / np.log2(3) + 7 / 2
    assert ndcg_at_k(pred, true, 3) == pytest.approx(dcg / idcg)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_ndcg_agrees_with_keras_rs(k):
    rng = np.random.default_rng(k)
    true = rng.integers(1, 6, (20, 10)).astype("float32")
    pred = rng.random((20, 10)).astype("float32")
    metric = keras_rs.metrics.NDCG(k=k)
    ours = []
    for p, t in zip(pred, true):
        ours.append(ndcg_at_k(p, t, k))
    metric.update_state(true, pred)
    assert float(metric.result()) == pytest.approx(np.mean(ours), rel=1e-5)


def test_task_metrics_and_average():
    m = task_metrics(np.array([3.0, 4.0]), np.array([4.0, 4.0]), ks=(1,))
    assert m["MAE"] == pytest.approx(0.5)
    assert m["RMSE"] == pytest.approx(np.sqrt(0.5))
    avg = average_metrics([{"MAE": 1.0}, {"MAE": 3.0}])
    assert avg == {"MAE": 2.0}
    with pytest.raises(ValueError, match="non-empty"):
        task_metrics(np.array([]), np.array([]))
