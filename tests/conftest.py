"""Fixtures shared across the test suite (small data the tests generate)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_synthetic():
    """A small synthetic cold-start dataset with its split and encoding."""
    from tfmetarec.data import FeatureEncoder, SplitConfig, cold_start_split, make_synthetic

    data = make_synthetic(num_users=200, num_items=150, seed=3)
    split = cold_start_split(data, SplitConfig(seed=3))
    encoder = FeatureEncoder().fit(data, train_users=split.existing_users, train_items=split.existing_items)
    return data, split, encoder.transform(data)
