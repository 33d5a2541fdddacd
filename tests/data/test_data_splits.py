"""Cold-start splits: invariants of the MeLU protocol, the time split, determinism, saving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import SCENARIOS, ColdStartSplit, SplitConfig, cold_start_split, load_split, make_synthetic


@pytest.fixture(scope="module")
def data():
    return make_synthetic()


@pytest.fixture(scope="module")
def split(data):
    return cold_start_split(data, SplitConfig(seed=7))


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def test_melu_invariants(data, split: ColdStartSplit) -> None:
    cfg = split.config
    mt = split.meta_train
    assert not mt["user"].isin(split.new_users).any()
    assert not mt["item"].isin(split.new_items).any()
    assert not pairs(mt) & pairs(split.partitions["warm"])
    assert set(split.partitions) == set(SCENARIOS)
    assert not np.intersect1d(split.existing_users, split.new_users).size
    assert not np.intersect1d(split.existing_items, split.new_items).size
    for ids in (split.existing_users, split.new_users, split.existing_items, split.new_items):
        assert np.all(np.diff(ids) > 0)

    years = data.items.set_index("item")["year"]
    assert (years.loc[split.new_items] >= 1998).all() and (years.loc[split.existing_items] < 1998).all()
    n_users = len(split.existing_users) + len(split.new_users)
    assert len(split.new_users) == round(0.2 * n_users)

    expect = {
        "warm": (split.existing_users, split.existing_items),
        "user_cold": (split.new_users, split.existing_items),
        "item_cold": (split.existing_users, split.new_items),
        "user_item_cold": (split.new_users, split.new_items),
    }
    for name, (users, items) in expect.items():
        frame = split.partitions[name]
        assert len(frame) > 0, name
        assert list(frame.columns) == list(data.ratings.columns)
        assert frame["user"].isin(users).all() and frame["item"].isin(items).all(), name
        sizes = frame.groupby("user").size()
        if name == "warm":
            assert (sizes == cfg.query_size).all()
            support = mt[mt["user"].isin(sizes.index)].groupby("user").size()
            assert (support >= cfg.min_support).all()
        else:
            assert (sizes >= cfg.query_size + cfg.min_support).all(), name
    everything = pd.concat([mt, *split.partitions.values()])
    assert not everything.duplicated(["user", "item"]).any()
    assert pairs(everything) <= pairs(data.ratings)


def test_user_rating_limits(data) -> None:
    cfg = SplitConfig(min_user_ratings=30, max_user_ratings=50)
    split = cold_start_split(data, cfg)
    n = data.ratings.groupby("user").size()
    kept = np.union1d(split.existing_users, split.new_users)
    np.testing.assert_array_equal(kept, n[(n >= 30) & (n <= 50)].index.to_numpy())


def test_counts_table(split: ColdStartSplit) -> None:
    counts = split.counts()
    assert list(counts.columns) == ["users", "items", "ratings"]
    assert list(counts.index) == ["meta_train", *SCENARIOS]
    assert counts.loc["warm", "ratings"] == len(split.partitions["warm"])
    assert counts.loc["meta_train", "users"] == split.meta_train["user"].nunique()


def test_deterministic_per_seed(data, split: ColdStartSplit) -> None:
    again = cold_start_split(data, SplitConfig(seed=7))
    pd.testing.assert_frame_equal(split.meta_train, again.meta_train)
    for name in SCENARIOS:
        pd.testing.assert_frame_equal(split.partitions[name], again.partitions[name])
    other = cold_start_split(data, SplitConfig(seed=8))
    assert not np.array_equal(split.new_users, other.new_users)
    assert not split.partitions["warm"].equals(other.partitions["warm"])


def test_time_method_separates_by_time(data) -> None:
    cfg = SplitConfig(method="time", time_quantile=0.75)
    split = cold_start_split(data, cfg)
    first_user = data.ratings.groupby("user")["timestamp"].min()
    first_item = data.ratings.groupby("item")["timestamp"].min()
    assert first_user.loc[split.new_users].min() > first_user.loc[split.existing_users].max()
    cutoff = first_user.loc[split.existing_users].max()
    assert (first_item.loc[split.new_items] > cutoff).all()
    assert (first_item.reindex(split.existing_items).dropna() <= first_item.loc[split.new_items].min()).all()
    assert not split.meta_train["user"].isin(split.new_users).any()
    assert not split.meta_train["item"].isin(split.new_items).any()
    # the warm hold-out is each existing user's latest ratings
    warm, mt = split.partitions["warm"], split.meta_train
    last_train = mt[mt["user"].isin(warm["user"])].groupby("user")["timestamp"].max()
    assert (warm.groupby("user")["timestamp"].min() >= last_train).all()
    for name in SCENARIOS:
        assert len(split.partitions[name]) > 0, name


def _pandas_warm(data, config: SplitConfig, split: ColdStartSplit) -> pd.DataFrame:
    """The warm hold-out computed the plain pandas way (sort by user, key, item; the first
    ``query_size`` of each user), with the same random draws as the split."""
    rng = np.random.default_rng(config.seed)
    users = np.unique(data.ratings["user"])
    if config.method == "melu":
        rng.permutation(users)  # the draw of the new users comes first
    n = data.ratings.groupby("user")["item"].transform("size")
    active = data.ratings[(n >= config.min_user_ratings) & (n <= config.max_user_ratings)]
    pool = active[active["user"].isin(split.existing_users) & active["item"].isin(split.existing_items)]
    pool = pool[pool.groupby("user")["item"].transform("size") >= config.query_size + config.min_support]
    key = -pool["timestamp"].to_numpy(dtype="float64") if config.method == "time" else rng.random(len(pool))
    ranked = pool.assign(_key=key).sort_values(["user", "_key", "item"])
    held = ranked[ranked.groupby("user").cumcount() < config.query_size].drop(columns="_key")
    return held.sort_values(["user", "item"], ignore_index=True)


@pytest.mark.parametrize("method", ["melu", "time"])
def test_the_fast_hold_out_equals_the_plain_pandas_one(method) -> None:
    # Coarse timestamps make ties within a user common: the item must break them the same way.
    data = make_synthetic(num_users=150, num_items=120, seed=4)
    data.ratings["timestamp"] = data.ratings["timestamp"] // 86_400 * 86_400
    config = SplitConfig(method=method, seed=11, query_size=4)
    split = cold_start_split(data, config)
    assert data.ratings.duplicated(["user", "timestamp"]).any()
    pd.testing.assert_frame_equal(split.partitions["warm"], _pandas_warm(data, config, split))
    for frame in (split.meta_train, *split.partitions.values()):
        pd.testing.assert_frame_equal(frame, frame.sort_values(["user", "item"], ignore_index=True))


def test_rows_sort_by_user_then_item_for_any_ids() -> None:
    from tfmetarec.data.splits import _by_user_item

    rng = np.random.default_rng(0)
    for low, high in ((0, 50), (-40, 40), (2**40, 2**40 + 30)):  # combined key, negative IDs, huge IDs
        users, items = rng.integers(low, high, 500), rng.integers(low, high, 500)
        np.testing.assert_array_equal(_by_user_item(users, items), np.lexsort((items, users)))


def test_config_round_trip_and_validation() -> None:
    cfg = SplitConfig(method="time", new_item_year=1995, query_size=5, seed=3)
    assert SplitConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert SplitConfig.from_dict({}) == SplitConfig()
    with pytest.raises(ValueError):
        SplitConfig(method="random")
    with pytest.raises(ValueError):
        SplitConfig.from_dict({"query": 3})


def test_explicit_year_and_unknown_dataset(data) -> None:
    split = cold_start_split(data, SplitConfig(new_item_year=1999))
    years = data.items.set_index("item")["year"]
    assert (years.loc[split.new_items] >= 1999).all() and (years.loc[split.existing_items] < 1999).all()
    renamed = type(data)("custom", data.ratings, data.users, data.items)
    with pytest.raises(ValueError, match="new_item_year"):
        cold_start_split(renamed)


def test_save_and_load(tmp_path: Path, data, split: ColdStartSplit) -> None:
    split.save(tmp_path / "split")
    counts = pd.read_csv(tmp_path / "split" / "counts.csv", index_col=0)
    pd.testing.assert_frame_equal(counts, split.counts(), check_names=False)
    loaded = load_split(tmp_path / "split", data)
    assert loaded.config == split.config
    np.testing.assert_array_equal(loaded.new_users, split.new_users)
    pd.testing.assert_frame_equal(loaded.meta_train, split.meta_train)
    for name in SCENARIOS:
        pd.testing.assert_frame_equal(loaded.partitions[name], split.partitions[name])
