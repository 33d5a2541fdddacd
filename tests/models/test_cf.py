import numpy as np
import pytest

from helpers import ITEM_FIELDS, ITEM_TABLE, NUM_ITEMS, USER_FIELDS, random_episode
from model_checks import (
    TASKS,
    check_maml_lowers_support_loss,
    item_rows_of,
    numpy_fields,
    perturbed,
    query_features,
    small_model,
    support_losses,
)
from tfmetarec.models import BiasedMF, get
from tfmetarec.types import SUPPORT


def test_registered_as_cf():
    assert get("cf") is BiasedMF


def test_score_is_the_biased_mf_formula_on_hand_set_weights():
    model = perturbed(small_model("cf", seed=3), seed=4, scale=0.5)
    w = {n: v.numpy() for n, v in model.parameters().items()}
    q = query_features(5)
    d = model.embedding_dim
    user = (np.concatenate([w["user_prior_factors"], [w["user_prior_bias"]]])
            + numpy_fields(w, "user_", USER_FIELDS, q["user_fields"]) @ w["user_feature_kernel"]
            + (q["user_id"] > 0)[..., None] * np.concatenate(
                [w["user_id_factors"][q["user_id"]], w["user_id_bias"][q["user_id"]][..., None]], -1))
    content_rows, ids = item_rows_of(q)
    content = numpy_fields(w, "item_", ITEM_FIELDS, content_rows)
    item = (np.concatenate([w["item_prior_factors"], [w["item_prior_bias"]]])
            + content @ w["item_content_kernel"]
            + (ids > 0)[..., None] * np.concatenate([w["item_id_factors"][ids], w["item_id_bias"][ids][..., None]], -1))
    expected = (user[..., :d] * item[..., :d]).sum(-1) + user[..., d] + item[..., d] + w["global_bias"]
    np.testing.assert_allclose(model(q).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_oov_user_and_item_use_the_learned_priors():
    model = perturbed(BiasedMF(embedding_dim=3, num_users=4, num_items=4, use_ids=True, seed=0), seed=1)
    w = {n: v.numpy() for n, v in model.parameters().items()}
    features = {"user_id": np.array([0, 2], "int32"), "item_id": np.array([0, 0], "int32")}
    params = model.variable_values()
    users = model.user_representation(params, features).numpy()
    prior = np.concatenate([w["user_prior_factors"], [w["user_prior_bias"]]])
    np.testing.assert_allclose(users[0], prior, rtol=1e-6)  # the new user is exactly the prior
    np.testing.assert_allclose(users[1], prior + np.concatenate([w["user_id_factors"][2], [w["user_id_bias"][2]]]),
                               rtol=1e-6)
    items = model.item_representation(params, features).numpy()
    np.testing.assert_allclose(items[0], np.concatenate([w["item_prior_factors"], [w["item_prior_bias"]]]), rtol=1e-6)
    # row 0 of the ID tables is never read: changing it changes nothing
    before = model(features).numpy()
    model.get_layer if False else None
    params_ = model.parameters()
    params_["user_id_factors"].assign(w["user_id_factors"] + np.eye(4, 3) * 5)
    params_["item_id_bias"].assign(w["item_id_bias"] + np.array([7.0, 0, 0, 0], "float32"))
    after = model(features).numpy()
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)


def test_new_item_starts_from_its_content():
    model = perturbed(small_model("cf", seed=2), seed=3)
    q = query_features(1)
    q["item_id"][:] = NUM_ITEMS  # a content-only item (no ID embedding)
    other = {k: v.copy() for k, v in q.items()}
    other["item_id"][:] = NUM_ITEMS + 1
    assert not np.array_equal(ITEM_TABLE[NUM_ITEMS], ITEM_TABLE[NUM_ITEMS + 1])
    assert np.abs(model(q).numpy() - model(other).numpy()).max() > 1e-4
    plain = small_model("cf", seed=2, item_content=False)
    assert "item_content_kernel" not in plain.parameters()
    np.testing.assert_allclose(plain(q).numpy(), plain(other).numpy(), rtol=1e-6)


def test_param_groups_put_the_user_side_in_decision():
    model = small_model("cf")
    groups = model.param_groups()
    assert groups["decision"] == groups["user"] == ("user_prior_factors", "user_prior_bias", "user_feature_kernel")
    assert groups["user_prior"] == ("user_prior_factors", "user_prior_bias")
    assert not set(groups["user"]) & set(groups["item"])
    user_tables = {f"user_{f.name}_embedding" for f in USER_FIELDS}
    assert set(groups["user"]) | set(groups["item"]) | {"global_bias", "user_id_factors",
                                                          "user_id_bias"} | user_tables == set(groups["all"])
    assert {f"item_{f.name}_embedding" for f in ITEM_FIELDS} <= set(groups["item"])
    assert model.user_state_dim == model.item_dim == model.embedding_dim + 1


@pytest.mark.parametrize("group", ["user", "user_prior", "all"])
def test_maml_adapting_the_user_side_lowers_the_support_loss(group):
    check_maml_lowers_support_loss(perturbed(small_model("cf", seed=6), seed=7), adapt=group)


def test_adapting_the_item_prior_fits_each_item_tasks_support():
    """Item tasks (every row of a task rates one item): the item_prior group fits each new item."""
    from tfmetarec.learners import MAML

    model = perturbed(small_model("cf", seed=8), seed=9)
    learner = MAML(model, inner_steps=3, inner_lr=0.1, adapt="item_prior")
    episode = random_episode(seed=12, tasks=TASKS, support=6, item_tasks=True)
    before = support_losses(model, episode[SUPPORT])
    after = support_losses(model, episode[SUPPORT], learner.adapt(episode[SUPPORT]))
    assert np.all(after < before - 1e-4), (before, after)
