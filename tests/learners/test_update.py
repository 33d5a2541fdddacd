"""A user's next rating: `update` advances a state without replaying the history; exact where
promised (metric memories, the task encoder's pooled sums), bounded memories, and the
streaming protocol."""

import numpy as np
import pytest
import tensorflow as tf

import learner_checks as checks
from helpers import random_episode
from tfmetarec.learners.online import append_rows
from tfmetarec.types import MASK, QUERY, SUPPORT, features_of

EXACT = [("prototype", {}), ("matching", {}), ("task_encoder", {}), ("task_encoder", {"pooling": "mean"})]


def _one_by_one(learner, support, k):
    """The state after the first ``k`` support rows arrive one at a time, from an empty start."""
    empty = {**support, MASK: np.zeros_like(support[MASK])}
    state = learner.adapt(empty)
    for j in range(k):
        state = learner.update(state, {key: v[:, j:j + 1] for key, v in support.items()})
    return state


@pytest.mark.parametrize("name, options", EXACT, ids=[f"{n}-{o.get('pooling', '')}" for n, o in EXACT])
def test_updates_one_rating_at_a_time_equal_adapting_on_all_of_them(name, options):
    learner = checks.build(name, seed=2, **options)
    episode = random_episode(seed=4, tasks=3, support=6, query=5)
    support, query = episode[SUPPORT], features_of(episode[QUERY])
    for k in (1, 3, 6):
        at_once = {**support, MASK: support[MASK] * (np.arange(6) < k)}
        np.testing.assert_allclose(learner.score(_one_by_one(learner, support, k), query).numpy(),
                                   learner.score(learner.adapt(at_once), query).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", checks.KINDS)
def test_an_update_with_no_new_rating_leaves_the_state_unchanged(name):
    learner = checks.build(name, seed=3)
    episode = random_episode(seed=5, tasks=3, support=6, query=4, support_sizes=[0, 2, 6])
    state = learner.serving_state(learner.adapt(episode[SUPPORT]))  # the form a service keeps
    nothing = {**episode[SUPPORT], MASK: np.zeros_like(episode[SUPPORT][MASK])}
    after = learner.serving_state(learner.update(state, nothing))
    assert set(after) == set(state), name
    for key in state:
        np.testing.assert_allclose(after[key].numpy(), state[key].numpy(), atol=1e-7, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("mode", ["new", "history"])
def test_a_gradient_update_moves_toward_the_new_rating(mode):
    learner = checks.build("maml", seed=6, update_mode=mode, history_size=4, update_steps=2)
    episode = random_episode(seed=7, tasks=2, support=6, query=4)
    support = episode[SUPPORT]
    state = learner.adapt({**support, MASK: support[MASK] * (np.arange(6) < 3)})
    new = {k: v[:, 3:4] for k, v in support.items()}
    new["rating"] = np.full_like(new["rating"], 5.0)
    before = learner.score(state, features_of(new)).numpy()
    after = learner.score(learner.update(state, new), features_of(new)).numpy()
    assert np.all(np.abs(after - 5.0) < np.abs(before - 5.0)), (before, after)
    if mode == "history":  # the state keeps the last 4 ratings, the newest last
        state = learner.update(learner.update(state, new), new)
        assert state["history_mask"].shape == (2, 4) and np.all(state["history_mask"].numpy() == 1)
        np.testing.assert_array_equal(state["history_rating"].numpy()[:, -2:], 5.0)


def test_append_rows_keeps_the_most_recent_rows_in_order():
    old = {"x": tf.constant([[1, 2, 0], [7, 0, 0]]), "mask": tf.constant([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])}
    new = {"x": tf.constant([[3, 9], [8, 9]]), "mask": tf.constant([[1.0, 0.0], [1.0, 0.0]])}
    out = append_rows(old, new, capacity=2)
    np.testing.assert_array_equal(out["x"].numpy(), [[2, 3], [7, 8]])
    np.testing.assert_array_equal(out["mask"].numpy(), [[1, 1], [1, 1]])
    out = append_rows(old, new, capacity=4)
    np.testing.assert_array_equal(out["x"].numpy(), [[1, 2, 3, 0], [7, 8, 0, 0]])


def test_memories_stay_bounded_and_keep_the_newest_ratings():
    learner = checks.build("matching", seed=1, memory_size=4)
    episode = random_episode(seed=2, tasks=2, support=6, query=4)
    state = _one_by_one(learner, episode[SUPPORT], 6)
    assert state["memory_key"].shape[1] == 4 and np.all(state["memory_mask"].numpy() == 1)
    latest = learner.adapt({k: v[:, 2:] for k, v in episode[SUPPORT].items()})
    query = features_of(episode[QUERY])
    np.testing.assert_allclose(learner.score(state, query).numpy(), learner.score(latest, query).numpy(), atol=1e-5)


def test_the_streaming_protocol(small_synthetic):
    """n = 0 is no adaptation; the exact learners' incremental and re-adapt curves coincide;
    ratings arrive in timestamp order."""
    from tfmetarec.evaluation.streaming import StreamMethod, stream_tasks, streaming_curve
    from tfmetarec.learners import TaskEncoder
    from tfmetarec.models import MeLU

    data, split, encoded = small_synthetic
    ratings = split.partitions["user_cold"]
    tasks = stream_tasks(encoded, ratings, query_size=5, reveal=6, seed=1)
    assert len(tasks) > 3 and set(tasks.support_sizes()) == {6}
    times = ratings.set_index(["user", "item"])["timestamp"]
    for t in range(3):
        user, items = tasks.task_ids[t], encoded.item_raw_ids[tasks.support.task(t)[1]]
        stamps = [times.loc[(user, i)] for i in items]
        assert stamps == sorted(stamps), "ratings arrive in timestamp order"
    model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=4, hidden_units=(8,), seed=0)
    encoder_learner = TaskEncoder(model, hidden_dim=6, seed=0)
    maml = checks.learners.MAML(model, inner_steps=2, inner_lr=0.1)
    curve = streaming_curve({"incremental": StreamMethod(encoder_learner, "incremental"),
                             "re-adapt": StreamMethod(encoder_learner, "readapt"),
                             "maml incremental": StreamMethod(maml, "incremental"),
                             "no adaptation": StreamMethod(checks.learners.Pretrain(model), "readapt")},
                            encoded, tasks, points=(0, 1, 3, 6))
    table = curve.set_index(["method", "n"])
    assert set(curve["n"]) == {0, 1, 3, 6} and (curve["tasks"] == len(tasks)).all()
    for n in (0, 1, 3, 6):
        np.testing.assert_allclose(table.loc[("incremental", n), "MAE"], table.loc[("re-adapt", n), "MAE"], atol=1e-5)
    # before any rating every method is the model's prior
    np.testing.assert_allclose(table.loc[("maml incremental", 0), "MAE"], table.loc[("no adaptation", 0), "MAE"],
                               atol=1e-6)
    assert table.loc[("maml incremental", 6), "MAE"] != table.loc[("maml incremental", 0), "MAE"]
    assert (curve["ms_per_user"] >= 0).all()


def test_history_works_for_models_without_user_fields():
    """Data with no user features (latest-small, 20M/25M): rows of width 0 are kept, not scattered."""
    from helpers import ITEM_FIELDS, ITEM_TABLE, NUM_ITEMS, NUM_USERS
    from tfmetarec.learners import MAML
    from tfmetarec.models import MeLU

    model = MeLU(item_fields=ITEM_FIELDS, embedding_dim=4, hidden_units=(8, 4), num_users=NUM_USERS, num_items=NUM_ITEMS,
                 seed=0)
    model.set_item_table(ITEM_TABLE)
    learner = MAML(model, inner_steps=2, inner_lr=0.1, update_mode="history", history_size=4)
    episode = random_episode(seed=8, tasks=2, support=5, query=3)
    support = {k: (v[..., :0] if k == "user_fields" else v) for k, v in episode[SUPPORT].items()}
    query = {k: (v[..., :0] if k == "user_fields" else v) for k, v in features_of(episode[QUERY]).items()}
    state = learner.update(learner.adapt({k: v[:, :3] for k, v in support.items()}),
                           {k: v[:, 3:4] for k, v in support.items()})
    assert state["history_user_fields"].shape == (2, 4, 0)
    np.testing.assert_array_equal(state["history_mask"].numpy().sum(axis=1), np.minimum(
        support[MASK][:, :4].sum(axis=1), 4))
    assert np.isfinite(learner.score(state, query).numpy()).all()
    out = append_rows({"f": tf.zeros([2, 1, 0]), "mask": tf.ones([2, 1])}, {"f": tf.zeros([2, 2, 0]),
                                                                          "mask": tf.ones([2, 2])}, capacity=2)
    assert out["f"].shape == (2, 2, 0)
