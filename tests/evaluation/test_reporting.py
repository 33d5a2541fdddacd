import numpy as np
import pandas as pd
import pytest

from tfmetarec.evaluation.metrics import auc, binary_metrics, coverage_at_k
from tfmetarec.evaluation.report import aggregate_seeds, to_markdown, to_markdown_with_spread


def test_auc_counts_pairs_and_ties():
    liked = np.array([True, True, False, False])
    assert auc(np.array([4.0, 3.0, 2.0, 1.0]), liked) == 1.0
    assert auc(np.array([1.0, 2.0, 3.0, 4.0]), liked) == 0.0
    assert auc(np.array([2.0, 2.0, 2.0, 2.0]), liked) == 0.5
    assert np.isnan(auc(np.array([1.0, 2.0]), np.array([True, True])))


def test_binary_metrics_pool_rows():
    results = [(np.array([4.2, 3.6, 2.0]), np.array([5.0, 3.0, 4.0])), (np.array([1.0, 4.9]), np.array([2.0, 4.0]))]
    m = binary_metrics(results)
    # predicted likes: 4.2 (tp), 3.6 (fp), 4.9 (tp); missed like: 2.0 -> 4 (fn)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["F1"] == pytest.approx(2 / 3)
    assert m["AUC"] == pytest.approx(np.mean([0.5, 1.0]))


def test_coverage():
    ranked = [np.array([1, 2, 3]), np.array([1, 4, 5])]
    assert coverage_at_k(ranked, np.array([1, 2, 3, 4, 5, 6]), 1) == pytest.approx(1 / 6)
    assert coverage_at_k(ranked, np.array([1, 2, 3, 4, 5, 6]), 2) == pytest.approx(3 / 6)


def test_aggregate_seeds_mean_and_std():
    a = pd.DataFrame([{"scenario": "user_cold", "method": "maml", "tasks": 10, "MAE": 0.8}])
    b = pd.DataFrame([{"scenario": "user_cold", "method": "maml", "tasks": 10, "MAE": 1.0}])
    agg = aggregate_seeds([a, b])
    assert agg.loc[0, "MAE"] == pytest.approx(0.9)
    assert agg.loc[0, "MAE_std"] == pytest.approx(np.std([0.8, 1.0], ddof=1))
    assert agg.loc[0, "seeds"] == 2
    assert "0.9000 ± 0.1414" in to_markdown_with_spread(agg, spread="std")
    # 95 % t interval of two values: t(1) = 12.706, half-width = 12.706 * sd / sqrt(2)
    assert agg.loc[0, "MAE_ci"] == pytest.approx(12.706 * np.std([0.8, 1.0], ddof=1) / np.sqrt(2))
    assert "0.9000 ± 1.2706" in to_markdown_with_spread(agg)
    assert to_markdown(a).splitlines()[0] == "| scenario | method | tasks | MAE |"
