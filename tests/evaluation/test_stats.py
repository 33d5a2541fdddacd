"""Confidence intervals and paired tests: known values, and "beats" only where significant."""

import numpy as np
import pandas as pd
import pytest

from tfmetarec.evaluation.stats import compare, mean_ci, paired_test, t975, verdict


def test_t_quantiles_and_mean_ci():
    assert t975(1) == pytest.approx(12.706) and t975(30) == pytest.approx(2.042)
    assert t975(1000) == pytest.approx(1.9623, abs=1e-3) and t975(50) == pytest.approx(2.0086, abs=2e-3)
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / np.sqrt(3))
    assert np.isnan(mean_ci([1.0])[1])


def test_paired_test_exact_small_and_monte_carlo_large():
    # 5 positive differences: of 32 sign patterns only all-plus and all-minus are as extreme
    result = paired_test([1.1, 1.2, 1.3, 1.4, 1.5], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert result["p"] == pytest.approx(2 / 32) and result["diff"] == pytest.approx(0.3) and result["n"] == 5
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    shifted = paired_test(a + 0.3 + rng.normal(scale=0.1, size=400), a)
    assert shifted["p"] < 0.001 and shifted["ci_low"] > 0.25
    noise = paired_test(a + rng.normal(scale=0.1, size=400), a)
    assert noise["p"] > 0.05 and noise["ci_low"] < 0 < noise["ci_high"]
    with pytest.raises(ValueError, match="same length"):
        paired_test([1.0], [1.0, 2.0])


def test_compare_says_better_only_when_significant():
    rng = np.random.default_rng(1)
    rows = []
    for t in range(60):
        base = rng.uniform(0.5, 1.0)
        rows += [{"method": "maml", "scenario": "user_cold", "task": t, "MAE": base - 0.1, "nDCG@3": base},
                 {"method": "maml", "scenario": "item_cold", "task": t, "MAE": base + rng.normal(scale=0.05),
                  "nDCG@3": base},
                 {"method": "base", "scenario": "user_cold", "task": t, "MAE": base, "nDCG@3": base + 0.05},
                 {"method": "base", "scenario": "item_cold", "task": t, "MAE": base, "nDCG@3": base}]
    tests = compare(pd.DataFrame(rows), "maml", "base").set_index(["scenario", "metric"])
    assert tests.loc[("user_cold", "MAE"), "verdict"] == "better"  # lower MAE
    assert tests.loc[("user_cold", "nDCG@3"), "verdict"] == "worse"  # lower nDCG
    assert tests.loc[("item_cold", "MAE"), "verdict"] == "no significant difference"
    assert verdict("nDCG@3", 0.1, 0.2) == "no significant difference"
