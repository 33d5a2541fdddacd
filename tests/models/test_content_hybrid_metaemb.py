"""Behaviour specific to the content, hybrid and MetaEmb models (the shared checks and
the learner runs are in test_model_roundtrip.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ITEM_TABLE, NUM_ITEMS, TABLE_ROWS, USER_FIELDS
from model_checks import perturbed, query_features, small_model
from tfmetarec import learners, models
from tfmetarec.learners import MetaTrainer
from tfmetarec.models.cf import bilinear_score
from tfmetarec.tasks.samplers import EpisodeSampler
from tfmetarec.types import ITEM_ID


def test_content_model_scores_items_by_content_alone():
    model = perturbed(small_model("content", seed=1), seed=2)
    q = query_features()
    content = ITEM_TABLE[q[ITEM_ID]]
    # other items (known, content-only or unknown), given the same content
    same = {**q, ITEM_ID: (q[ITEM_ID] + 1) % TABLE_ROWS, "item_fields": content}
    np.testing.assert_allclose(model(same).numpy(), model(q).numpy(), rtol=1e-6)
    other = {**q, "item_fields": ITEM_TABLE[(q[ITEM_ID] % (TABLE_ROWS - 1)) + 1][:, ::-1]}
    assert np.abs(model(other).numpy() - model(q).numpy()).max() > 1e-4
    assert set(model.param_groups()["item_tower"]).isdisjoint(model.param_groups()["decision"])


@pytest.mark.parametrize("name", ["content", "metaemb", "two_tower"])
def test_models_that_read_content_refuse_to_be_built_without_it(name):
    with pytest.raises(ValueError, match="content"):
        models.get(name)(user_fields=USER_FIELDS[:1], item_fields=(), num_items=4, embedding_dim=4)


def test_global_hybrid_is_the_documented_blend():
    model = perturbed(small_model("hybrid", seed=3, alpha_mode="global"), seed=4)
    q = query_features(1)
    params = model.variable_values()

    def score(side_user, side_item, bias):
        return bilinear_score(side_user.state(params, q, model), side_item.state(params, q, model),
                              params[bias]).numpy()

    alpha = 1.0 / (1.0 + np.exp(-float(params["alpha_logit"])))
    expected = alpha * score(model.cf_user, model.cf_item, "cf_global_bias") + (1 - alpha) * score(
        model.cb_user, model.cb_item, "cb_global_bias")
    np.testing.assert_allclose(model(q).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert "alpha_slope" not in model.parameters()


@pytest.mark.parametrize("kwargs, message", [(dict(alpha_mode="per_item"), "alpha_mode"),
                                             (dict(alpha_init=1.0), "alpha_init")])
def test_hybrid_refuses_bad_blend_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model("hybrid", **kwargs)


def test_metaemb_generates_only_the_embedding_of_new_items():
    model = perturbed(small_model("metaemb", seed=5), seed=6)
    q = query_features(2)
    params = model.variable_values()
    known = {**q, ITEM_ID: np.full_like(q[ITEM_ID], 3)}
    new = {**q, ITEM_ID: np.full_like(q[ITEM_ID], NUM_ITEMS)}  # known by its content only
    zeroed = {**params, **{n: tf.zeros_like(params[n]) for n in model.param_groups()["generator"]}}
    np.testing.assert_allclose(model.forward(zeroed, known).numpy(), model.forward(params, known).numpy())
    assert np.abs(model.forward(zeroed, new).numpy() - model.forward(params, new).numpy()).max() > 1e-4
    generated = model.generate_item_embedding(params, new).numpy()
    ids = model.item_representation(params, new).numpy()[..., -model.embedding_dim:]
    np.testing.assert_allclose(ids, generated, rtol=1e-6)


def test_the_generator_trains_on_item_tasks_through_the_meta_trainer(small_synthetic, tmp_path):
    """Meta-Embedding's two-phase objective (learner ``metaemb_generator``) lowers the cold-phase
    loss of held-out item tasks, moves only the generator, checkpoints and resumes like any learner."""
    data, split, encoded = small_synthetic
    model = models.MetaEmb.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=8,
                                     hidden_units=(16,), seed=0)
    users = EpisodeSampler(encoded, split.meta_train, batch_size=16, query_size=10, max_support=32, seed=0)
    MetaTrainer(learners.create("pretrain", model), keras.optimizers.Adam(1e-2), jit_compile=False).fit(
        users, 150, verbose=0)  # the base model first, as the paper does
    frozen = {n: v.numpy().copy() for n, v in model.parameters().items() if n not in model.param_groups()["generator"]}
    learner = learners.create("metaemb_generator", model, cold_weight=0.5, warm_lr=0.03)
    items = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=4, max_support=8, task_key="item",
                           seed=1)
    probe = [items.sample(10_000 + i) for i in range(3)]

    def cold_loss():
        return np.mean([float(learner.meta_loss(p)[1]["cold_loss"]) for p in probe])

    before = cold_loss()
    trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False)
    history = trainer.fit(items, 100, verbose=0, checkpoint_dir=tmp_path / "ck", checkpoint_every=50)
    assert set(history) == {"loss", "cold_loss", "warm_loss"}
    resumed = MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False)
    resumed.fit(items, 150, verbose=0, checkpoint_dir=tmp_path / "ck")
    assert int(resumed.step.numpy()) == 150
    after = cold_loss()
    assert after < 0.9 * before, (before, after)
    for name, value in frozen.items():
        np.testing.assert_array_equal(model.parameters()[name].numpy(), value, err_msg=name)


def test_the_generator_learner_checks_its_model_and_settings():
    with pytest.raises(ValueError, match="MetaEmb.*metaemb"):
        learners.create("metaemb_generator", small_model("melu"))
    with pytest.raises(ValueError, match="cold_weight"):
        learners.create("metaemb_generator", small_model("metaemb"), cold_weight=2.0)
