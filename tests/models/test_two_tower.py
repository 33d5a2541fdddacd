"""The two-tower model, its in-batch softmax term and catalogue-wide retrieval."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ITEM_FIELDS, ITEM_TABLE, NUM_ITEMS, USER_FIELDS, random_episode
from model_checks import perturbed, query_features, small_model
from tfmetarec import learners
from tfmetarec.evaluation.retrieval import catalogue_retrieval, rank_catalogue, uses_vector_search
from tfmetarec.learners.losses import in_batch_candidates, in_batch_softmax_loss
from tfmetarec.models import TwoTower
from tfmetarec.objectives import QueryLoss
from tfmetarec.types import QUERY


def test_score_is_a_dot_product_of_the_two_towers():
    model = perturbed(small_model("two_tower", seed=1), seed=2)
    q = query_features()
    params = model.variable_values()
    users, items = model.user_representation(params, q).numpy(), model.item_representation(params, q).numpy()
    assert users.shape[-1] == items.shape[-1] == model.embedding_dim + 1
    np.testing.assert_allclose(users[..., -1], 1.0)
    expected = (users * items).sum(-1) + float(params["global_bias"])
    np.testing.assert_allclose(model(q).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_new_items_are_placed_by_content_and_known_items_get_their_residual():
    model = perturbed(small_model("two_tower", seed=3), seed=4)
    q = query_features(1)
    known = {**q, "item_id": (q["item_id"] % 4) + 1}
    cold = {**known, "item_id": np.full_like(q["item_id"], NUM_ITEMS), "item_fields": ITEM_TABLE[known["item_id"]]}
    assert np.abs(model(cold).numpy() - model(known).numpy()).max() > 1e-4  # the ID residual
    swapped = {**cold, "item_fields": ITEM_TABLE[(known["item_id"] % 4) + 1]}
    assert np.abs(model(cold).numpy() - model(swapped).numpy()).max() > 1e-4


def test_the_user_tower_is_the_adapted_part():
    groups = small_model("two_tower").param_groups()
    assert groups["decision"] == groups["user_tower"]
    assert all(n.startswith("user_tower_") for n in groups["user_tower"])
    assert not set(groups["user_tower"]) & set(groups["item_tower"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(user_fields=(), use_ids=False), "user tower needs"),
    (dict(item_fields=()), "item content"),
])
def test_bad_configurations_are_refused(kwargs, message):
    args = dict(user_fields=USER_FIELDS, item_fields=ITEM_FIELDS, num_items=6, embedding_dim=4)
    with pytest.raises(ValueError, match=message):
        TwoTower(**{**args, **kwargs})


def _reference_softmax(scores, query, task_mask, temperature, threshold=4.0):
    """Plain NumPy in-batch softmax: one row per liked query item."""
    mask = query["mask"] * task_mask[:, None]
    tasks, rows = mask.shape
    ids = query["item_id"].reshape(-1)
    losses = []
    for t in range(tasks):
        for q in range(rows):
            if mask[t, q] == 0 or query["rating"][t, q] < threshold:
                continue
            target = t * rows + q
            keep = [c for c in range(tasks * rows) if mask.reshape(-1)[c] > 0
                    and (c == target or ids[c] == 0 or ids[c] != ids[target])]
            logits = scores[t, keep] / temperature
            top = logits.max()
            losses.append(np.log(np.exp(logits - top).sum()) + top - scores[t, target] / temperature)
    return float(np.mean(losses))


def test_in_batch_softmax_matches_a_numpy_reference():
    episode = random_episode(seed=4, tasks=3, query=4)
    query = dict(episode[QUERY])
    query["item_id"] = np.array([[1, 2, 0, 3], [2, 4, 0, 1], [3, 3, 1, 0]], "int32")  # duplicates and new items
    query["rating"] = np.array([[5, 4, 1, 2], [4, 5, 5, 3], [1, 2, 3, 4]], "float32")
    query["mask"][1, 3] = 0.0  # a padding row
    task_mask = np.array([1.0, 1.0, 0.0], "float32")  # and a padding task
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 12)).astype("float32")
    seen = {}

    def score_fn(features):
        seen.update(features)
        return tf.constant(scores)

    got = float(in_batch_softmax_loss(score_fn, query, task_mask, temperature=0.5))
    np.testing.assert_allclose(got, _reference_softmax(scores, query, task_mask, 0.5), rtol=1e-5)
    # candidates: every query item of the batch, each task's own user
    assert seen["item_id"].shape == (3, 12) and seen["user_fields"].shape == (3, 12, 4)
    np.testing.assert_array_equal(seen["item_id"][2], query["item_id"].reshape(-1))
    np.testing.assert_array_equal(seen["user_fields"][1, 7], query["user_fields"][1, 0])
    assert float(in_batch_softmax_loss(score_fn, {**query, "rating": np.ones((3, 4), "float32")}, task_mask)) == 0.0


def test_in_batch_candidates_keep_feature_widths():
    query = random_episode(seed=1, tasks=2, query=3)[QUERY]
    query["item_fields"] = ITEM_TABLE[query["item_id"]]
    query["item_offset"] = np.arange(6, dtype="float32").reshape(2, 3)  # an item's own offset travels with it
    cands = in_batch_candidates(query)
    assert cands["item_fields"].shape == (2, 6, ITEM_TABLE.shape[-1])
    assert cands["user_fields"].shape == (2, 6, len(USER_FIELDS))
    np.testing.assert_array_equal(cands["item_offset"], np.tile(np.arange(6, dtype="float32"), (2, 1)))


def test_learners_add_the_retrieval_term_by_the_query_loss_and_the_models_default():
    episode = random_episode(seed=6, tasks=3)
    plain = learners.MAML(small_model("two_tower", seed=5), inner_steps=1, inner_lr=0.05,
                          query_loss=QueryLoss(retrieval_weight=0.0))
    loss, logs = plain.meta_loss(episode)
    assert "retrieval_loss" not in logs
    assert learners.MAML(small_model("two_tower", seed=5)).query_loss.retrieval_weight == 0.1  # the model's default
    assert learners.MAML(small_model("melu", seed=5)).query_loss.retrieval_weight == 0.0
    with pytest.raises(ValueError, match="retrieval_temperature"):
        QueryLoss(retrieval_temperature=0.0)
    weighted = learners.MAML(small_model("two_tower", seed=5), inner_steps=1, inner_lr=0.05,
                             query_loss=QueryLoss(retrieval_weight=0.5))
    total, logs = weighted.meta_loss(episode)
    np.testing.assert_allclose(float(logs["rating_loss"]), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(total), float(loss) + 0.5 * float(logs["retrieval_loss"]), rtol=1e-5)
    assert float(logs["retrieval_loss"]) > 0
    # the term has gradients into the item tower, which MSE on a fixed query also touches
    grads, _ = weighted.meta_gradients(episode)
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_reptile_adds_the_retrieval_term_to_the_shared_towers_gradient():
    episode = random_episode(seed=9, tasks=3)

    def reptile(weight):
        return learners.Reptile(small_model("two_tower", seed=5), inner_steps=2, inner_lr=0.05, adapt="user_tower",
                                query_loss=QueryLoss(retrieval_weight=weight))

    plain, plain_logs = reptile(0.0).meta_gradients(episode)
    weighted, logs = reptile(0.5).meta_gradients(episode)
    assert "retrieval_loss" not in plain_logs and float(logs["retrieval_loss"]) > 0
    np.testing.assert_allclose(float(logs["rating_loss"]), float(plain_logs["loss"]), rtol=1e-5)
    names = list(reptile(0.0).model.parameters())
    adapted = set(reptile(0.0).adapt_names)
    for name, a, b in zip(names, plain, weighted):
        if name in adapted:  # the Reptile step toward the adapted weights does not change
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    moved = [n for n, a, b in zip(names, plain, weighted) if n not in adapted and np.abs(a - b).max() > 1e-6]
    assert moved, "the retrieval term should reach the shared item tower"


def test_retrieval_term_trains_under_xla():
    episode = random_episode(seed=7, tasks=4)
    learner = learners.MAML(small_model("two_tower", seed=8), inner_steps=2, inner_lr=0.05,
                            query_loss=QueryLoss(retrieval_weight=1.0))
    trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=True)
    first = float(trainer.train_step(episode)["retrieval_loss"])
    for _ in range(30):
        last = float(trainer.train_step(episode)["retrieval_loss"])
    assert last < first


@pytest.fixture(scope="module")
def trained_two_tower(small_synthetic):
    """MAML on the two-tower model after a short meta-training on synthetic users."""
    from tfmetarec.tasks.samplers import EpisodeSampler

    data, split, encoded = small_synthetic
    model = TwoTower.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=8, hidden_units=(16,), seed=0)
    learner = learners.MAML(model, inner_steps=2, inner_lr=0.1)
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=16, query_size=10, max_support=32, seed=0)
    learners.MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False).fit(sampler, 150, verbose=0)
    return learner, encoded, split


def _user_cold_tasks(encoded, split):
    from tfmetarec.tasks.episode import build_tasks

    return build_tasks(encoded, split.partitions["user_cold"], max_support=32, name="user_cold")


def test_keras_rs_search_and_full_scoring_rank_the_catalogue_alike(trained_two_tower):
    learner, encoded, split = trained_two_tower
    tasks = _user_cold_tasks(encoded, split)
    assert uses_vector_search(learner)
    searched = rank_catalogue(learner, encoded, tasks, k=15, vector_search=True)
    scored = rank_catalogue(learner, encoded, tasks, k=15, vector_search=False)
    assert len(searched) == len(tasks)
    same = np.mean([np.array_equal(a, b) for a, b in zip(searched, scored)])
    assert same > 0.95, same  # float ties may swap neighbours; nothing else differs
    for t, top in enumerate(searched):
        assert len(top) == 15 and len(set(top.tolist())) == 15
        assert not set(top.tolist()) & set(tasks.support.task(t)[1].tolist()), "a support item was recommended"


def test_catalogue_metrics_beat_chance_after_meta_training(trained_two_tower):
    learner, encoded, split = trained_two_tower
    tasks = _user_cold_tasks(encoded, split)
    found = catalogue_retrieval(learner, encoded, tasks, ks=(10, 40))
    chance = 40 / (encoded.num_table_items - 1)
    assert 0 < found["retrieval_tasks"] <= len(tasks)
    assert found["Recall@40"] > 1.5 * chance, (found, chance)
    assert found["Recall@10"] <= found["Recall@40"] <= 1.0
    assert 0 < found["cat_nDCG@10"] <= 1.0 and 0 < found["cat_coverage@40"] <= 1.0


def test_vector_search_is_refused_where_scores_are_not_dot_products(trained_two_tower):
    _, encoded, split = trained_two_tower
    tasks = _user_cold_tasks(encoded, split)
    melu = learners.MAML(small_model("melu"), inner_steps=1)
    assert not uses_vector_search(melu)
    with pytest.raises(ValueError, match="dot-product"):
        rank_catalogue(melu, encoded, tasks, vector_search=True)
    with pytest.raises(ValueError, match="k must be"):
        rank_catalogue(melu, encoded, tasks, k=0)


def test_support_batches_keep_their_task_mask(trained_two_tower):
    # rank_catalogue walks padded evaluation batches: padding tasks must not shift results
    learner, encoded, split = trained_two_tower
    tasks = _user_cold_tasks(encoded, split)
    small = rank_catalogue(learner, encoded, tasks, k=5, batch_size=3, vector_search=False)
    large = rank_catalogue(learner, encoded, tasks, k=5, batch_size=32, vector_search=False)
    assert np.mean([np.array_equal(a, b) for a, b in zip(small, large)]) > 0.95
