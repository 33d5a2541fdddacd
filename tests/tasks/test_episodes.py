import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfmetarec.tasks import EpisodeSampler, build_tasks, eval_batches, pad_episode, support_buckets
from tfmetarec.tasks.samplers import fitted_buckets
from tfmetarec.types import ITEM_ID, MASK, QUERY, SUPPORT, TASK_MASK, USER_ID


def _pairs(rows, t):
    u, i, _ = rows.task(t)
    return set(zip(u.tolist(), i.tolist()))


@pytest.mark.parametrize("scenario", ["user_cold", "item_cold", "user_item_cold"])
def test_no_query_pair_is_in_its_support_and_sizes_hold(small_synthetic, scenario):
    _, split, encoded = small_synthetic
    tasks = build_tasks(encoded, split.partitions[scenario], query_size=10, min_support=3, seed=1)
    assert len(tasks) > 0
    assert (tasks.query_sizes() == 10).all() and (tasks.support_sizes() >= 3).all()
    for t in range(len(tasks)):
        assert not (_pairs(tasks.support, t) & _pairs(tasks.query, t))
        assert _pairs(tasks.support, t) | _pairs(tasks.query, t)
    assert tasks.num_ratings() == sum(
        len(g) for _, g in split.partitions[scenario][split.partitions[scenario]["user"].isin(tasks.task_ids)].groupby("user")
    )


def test_build_tasks_is_seeded_and_deterministic(small_synthetic):
    _, split, encoded = small_synthetic
    a = build_tasks(encoded, split.partitions["user_cold"], seed=5)
    b = build_tasks(encoded, split.partitions["user_cold"], seed=5)
    c = build_tasks(encoded, split.partitions["user_cold"], seed=6)
    np.testing.assert_array_equal(a.query.item_row, b.query.item_row)
    assert not np.array_equal(a.query.item_row, c.query.item_row)


def test_warm_tasks_take_support_from_meta_train_and_query_from_hold_out(small_synthetic):
    _, split, encoded = small_synthetic
    tasks = build_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train, query_size=10)
    held = set(zip(split.partitions["warm"]["user"], split.partitions["warm"]["item"]))
    for t in range(len(tasks)):
        users = encoded.user_index[tasks.query.task(t)[0]]
        items = encoded.item_raw_ids[tasks.query.task(t)[1]]
        assert set(zip(users, items)) <= held
        assert not (_pairs(tasks.support, t) & _pairs(tasks.query, t))


def test_padded_masks_match_true_sizes(small_synthetic):
    _, split, encoded = small_synthetic
    tasks = build_tasks(encoded, split.partitions["user_cold"], query_size=10, min_support=3, seed=2)
    seen, slots = [], 0  # sorted groups padded to their own largest task
    for episode, idx in eval_batches(encoded, tasks, batch_size=8):
        s_mask, q_mask = episode[SUPPORT][MASK], episode[QUERY][MASK]
        assert s_mask.shape == (len(idx), tasks.support_sizes()[idx].max()) and len(idx) <= 8
        assert q_mask.shape == (len(idx), tasks.query_sizes()[idx].max()) and episode[TASK_MASK].all()
        np.testing.assert_array_equal(s_mask.sum(1), tasks.support_sizes()[idx])
        np.testing.assert_array_equal(q_mask.sum(1), tasks.query_sizes()[idx])
        np.testing.assert_array_equal(episode[QUERY][ITEM_ID][q_mask > 0],
                                      np.concatenate([tasks.query.task(int(t))[1] for t in idx]))
        seen += idx.tolist()
        slots += s_mask.size
    assert sorted(seen) == list(range(len(tasks)))
    assert tasks.support_sizes().sum() / slots > 0.85


def test_packed_groups_are_the_cheapest_contiguous_cut():
    from tfmetarec.tasks.samplers import packed_groups

    rng = np.random.default_rng(0)
    for _ in range(30):
        sizes = np.sort(rng.integers(1, 60, rng.integers(1, 9)))
        batch, call = int(rng.integers(1, 5)), float(rng.choice([0, 8, 40]))

        def cost(groups):
            return sum((hi - lo) * sizes[hi - 1] + call for lo, hi in groups)

        best = min(cost(g) for g in _cuts(len(sizes), batch))
        groups = packed_groups(sizes, batch, call)
        assert groups[0][0] == 0 and groups[-1][1] == len(sizes) and all(hi - lo <= batch for lo, hi in groups)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(groups)) and cost(groups) == best


def test_packed_cut_makes_more_calls_only_to_reach_the_share_of_real_rows():
    from tfmetarec.tasks.samplers import packed_cut, packed_groups, real_share

    rng = np.random.default_rng(1)
    for _ in range(20):
        sizes = np.sort(rng.integers(0, 200, rng.integers(1, 80)))  # widely spread, some empty supports
        cut = packed_cut(sizes, 32, call_rows=512, min_real=0.85)
        assert real_share(sizes, cut) >= 0.85 and [hi for _, hi in cut][-1] == len(sizes)
        cheapest = packed_groups(sizes, 32, 512)
        if real_share(sizes, cheapest) >= 0.85:
            assert cut == cheapest
        else:
            assert len(cut) > len(cheapest)
        assert packed_cut(sizes, 32, 512, min_real=0.0) == cheapest
    assert real_share(np.array([0, 1, 4]), [(0, 2), (2, 3)]) == 6 / 6  # an empty support takes one slot
    assert real_share(np.array([1, 2, 4]), [(0, 3)]) == 7 / 12


def test_joined_task_sets_keep_every_task_in_order(small_synthetic):
    from tfmetarec.tasks import join_task_sets

    _, split, encoded = small_synthetic
    a = build_tasks(encoded, split.partitions["user_cold"], query_size=5, min_support=3, seed=2)
    b = build_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train, query_size=5)
    joined = join_task_sets([a, b])
    assert len(joined) == len(a) + len(b) and joined.num_ratings() == a.num_ratings() + b.num_ratings()
    for t, (tasks, i) in enumerate([(a, i) for i in range(len(a))] + [(b, i) for i in range(len(b))]):
        for part in ("support", "query"):
            for x, y in zip(getattr(joined, part).task(t), getattr(tasks, part).task(i)):
                np.testing.assert_array_equal(x, y)
    items = dataclasses.replace(a, task_key="item", name="items")
    with pytest.raises(ValueError, match=r"different task keys \['item', 'user'\]"):
        join_task_sets([a, items])


def _cuts(n, batch, lo=0):
    """Every cut of ``lo..n`` into contiguous groups of at most ``batch``."""
    if lo == n:
        yield []
        return
    for hi in range(lo + 1, min(n, lo + batch) + 1):
        for rest in _cuts(n, batch, hi):
            yield [(lo, hi), *rest]


def test_meta_training_episodes_never_hold_new_users_or_items(small_synthetic):
    _, split, encoded = small_synthetic
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=16, query_size=10, seed=0)
    new_users = set(split.new_users.tolist())
    new_items = set(split.new_items.tolist())
    assert not (set(sampler.task_ids.tolist()) & new_users)
    for _, episode in zip(range(20), sampler):
        for part in (episode[SUPPORT], episode[QUERY]):
            real = part[MASK] > 0
            # the ID vocabularies were fitted on the meta-training side only: 0 would mean unseen
            assert (part[USER_ID][real] > 0).all() and (part[ITEM_ID][real] > 0).all()
        assert episode[SUPPORT][MASK].shape[1] in sampler.buckets
    train_pairs = set(zip(split.meta_train["user"], split.meta_train["item"]))
    assert not ({u for u, _ in train_pairs} & new_users)
    assert not ({i for _, i in train_pairs} & new_items)


def _padding(sizes, caps):
    return sum(min(c for c in caps if c >= s) - s for s in sizes)


def test_fitted_buckets_pad_the_fewest_rows():
    rng = np.random.default_rng(0)
    for _ in range(60):
        sizes = rng.integers(1, 20, rng.integers(1, 12)).tolist()
        count = int(rng.integers(1, 4))
        caps = fitted_buckets(sizes, count)
        values = sorted(set(sizes))
        brute = min(_padding(sizes, (*lower, values[-1])) for k in range(count)
                    for lower in itertools.combinations(values[:-1], k))
        assert len(caps) <= count and caps[-1] == max(sizes) and _padding(sizes, caps) == brute


def test_meta_training_buckets_are_fitted_to_the_supports(small_synthetic):
    """With ``fit_buckets``, as many buckets as powers of two would give, placed on the supports:
    fewer padded rows."""
    _, split, encoded = small_synthetic
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0, fit_buckets=True)
    assert EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0).buckets == support_buckets(
        int(sampler.support_sizes().max()))  # the default
    sizes = sampler.support_sizes()
    powers = support_buckets(int(sizes.max()))
    assert len(sampler.buckets) <= len(powers) and sampler.buckets[-1] == sizes.max()
    assert _padding(sizes, sampler.buckets) < _padding(sizes, powers)
    for _, episode in zip(range(20), sampler):  # every support fits its batch's bucket
        assert episode[SUPPORT][MASK].shape[1] in sampler.buckets
    from tfmetarec.cli import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["train", "--fit-buckets"])).train.fit_buckets


def test_tf_data_pipeline_delivers_the_same_structure(small_synthetic):
    _, split, encoded = small_synthetic
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=4, query_size=5, seed=0)
    episode = next(iter(sampler.dataset()))
    assert episode[SUPPORT][MASK].dtype == tf.float32
    assert episode[QUERY][MASK].shape == (4, 5)
    assert episode[SUPPORT]["user_fields"].shape[-1] == encoded.user_fields.shape[1]
    assert set(episode[SUPPORT]) == {"user_id", "item_id", "user_fields", "rating", "mask"}  # no per-row content


def test_bad_inputs_are_refused(small_synthetic):
    _, split, encoded = small_synthetic
    bad = split.partitions["user_cold"].copy()
    bad.loc[bad.index[0], "rating"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_tasks(encoded, bad)
    unknown = split.partitions["user_cold"].copy()
    unknown.loc[unknown.index[0], "user"] = 10**9
    with pytest.raises(KeyError, match="no feature row"):
        build_tasks(encoded, unknown)
    with pytest.raises(ValueError, match="task_key"):
        build_tasks(encoded, split.partitions["user_cold"], task_key="session")
    rows = (np.zeros(5, "int32"), np.zeros(5, "int32"), np.ones(5, "float32"))
    with pytest.raises(ValueError, match="more than the padded size"):
        pad_episode(encoded, [rows], [rows], support_size=4, query_size=5)


def test_item_tasks_group_by_item(small_synthetic):
    _, split, encoded = small_synthetic
    tasks = build_tasks(encoded, split.partitions["item_cold"], task_key="item", query_size=3, min_support=1)
    assert len(tasks) > 0
    for t in range(len(tasks)):
        items = set(tasks.support.task(t)[1].tolist()) | set(tasks.query.task(t)[1].tolist())
        assert len(items) == 1


def test_trimmed_supports_fill_their_bucket(small_synthetic):
    """With ``trim_supports`` every support is a random subset of the task's rows the size of the
    largest bucket it fills: no padded row but in supports under the smallest bucket."""
    _, split, encoded = small_synthetic
    plain = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0)
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0, trim_supports=True)
    assert plain.state()["fingerprint"] != sampler.state()["fingerprint"]
    sizes = sampler.support_sizes()
    assert sampler.buckets[-1] <= max(sizes.max(), 8) and set(sampler.buckets) <= set(plain.buckets)
    real = slots = 0
    drawn = {}
    for index in range(40):
        episode = sampler.sample(index)
        mask, cap = episode[SUPPORT][MASK], episode[SUPPORT][MASK].shape[1]
        rows = mask.sum(1)
        assert ((rows == cap) | (rows < sampler.buckets[0])).all()
        real, slots = real + mask.sum(), slots + mask.size
        for t in range(8):
            user = episode[SUPPORT][USER_ID][t, 0]
            pairs = set(zip(episode[SUPPORT][USER_ID][t][mask[t] > 0].tolist(),
                            episode[SUPPORT][ITEM_ID][t][mask[t] > 0].tolist()))
            drawn.setdefault(int(user), set()).update(pairs)
    assert real / slots > 0.85
    # some user's draws together hold more rows than any one draw can: the kept subsets change
    assert max(len(p) for p in drawn.values()) > sampler.buckets[-1]
    assert support_buckets(40) == (8, 16, 32, 64) and support_buckets(40, 6) == (6, 8, 16, 32, 64)
    assert support_buckets(5, 6) == (6,) and support_buckets(20, 12) == (12, 16, 32)
    # a smaller smallest bucket: supports of 4-7 rows are trimmed to 4, smaller ones padded to 4
    small = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0, trim_supports=True,
                           smallest_bucket=4)
    assert small.buckets == (4, *sampler.buckets) and small.state()["fingerprint"] != sampler.state()["fingerprint"]
    fours = [small.sample(i)[SUPPORT][MASK] for i in range(60)]
    fours = [m for m in fours if m.shape[1] == 4]
    assert fours and all(((m.sum(1) == 4) | (m.sum(1) < 4)).all() for m in fours)
    with pytest.raises(ValueError, match="smallest_bucket must be >= 1"):
        EpisodeSampler(encoded, split.meta_train, smallest_bucket=0)


def test_a_padded_stream_with_a_floor_adds_fitted_buckets_until_enough_rows_are_real(small_synthetic):
    from tfmetarec.tasks.samplers import padded_share

    _, split, encoded = small_synthetic
    plain = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0)
    supports = plain._supports
    assert padded_share(supports, plain.buckets) < 0.85  # the powers of two pad more than the floor allows
    floored = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0, min_real=0.85)
    assert padded_share(supports, floored.buckets) >= 0.85 and len(floored.buckets) > len(plain.buckets)
    assert floored.buckets[-1] == supports.max() and floored.state()["fingerprint"] != plain.state()["fingerprint"]
    fewer = fitted_buckets(supports, len(floored.buckets) - 1)  # one bucket fewer would not reach it
    assert padded_share(supports, fewer) < 0.85
    for _ in range(5):  # each episode padded to its bucket, every support whole: above the bucket below
        episode = floored.sample()
        rows, cap = episode[SUPPORT][MASK].sum(axis=1), episode[SUPPORT][MASK].shape[1]
        below = ([0, *floored.buckets])[floored.buckets.index(cap)]
        assert ((rows > below) & (rows <= cap)).all()
    trimmed = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0, trim_supports=True,
                             min_real=0.85)  # trimmed supports have no floor to reach: the default buckets
    assert trimmed.buckets == EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, seed=0,
                                             trim_supports=True).buckets
    with pytest.raises(ValueError, match=r"min_real must be in \(0, 1\]"):
        EpisodeSampler(encoded, split.meta_train, min_real=1.5)
