"""Behaviour specific to the content, hybrid and MetaEmb models (the shared checks and
the learner runs are in test_model_roundtrip.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ITEM_TABLE, NUM_ITEMS, TABLE_ROWS, USER_FIELDS
from model_checks import perturbed, query_features, small_model
from tfmetarec import models
from tfmetarec.models.cf import bilinear_score
from tfmetarec.models.metaemb import MetaEmbeddingTrainer, item_task_batches, meta_embedding_losses
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


def _item_rows(rows=600, seed=0):
    """Flat ratings in which an item's rating follows its content (the helpers' item
    table: its year bucket), so content predicts it."""
    rng = np.random.default_rng(seed)
    item = rng.integers(1, NUM_ITEMS, rows)
    features = {
        "user_fields": np.stack([rng.integers(0, f.vocab_size, rows) for f in USER_FIELDS], -1).astype("int32"),
        "item_id": item.astype("int32"),
    }
    year = ITEM_TABLE[item, 0].astype("float32")
    ratings = np.clip(np.round(1 + year + rng.normal(0, 0.3, rows)), 1, 5)
    return features, ratings.astype("float32")


def _fit_base(model, features, ratings, steps=200):
    """Plain regression of everything but the generator (known items), as the paper does first."""
    generator = set(model.param_groups()["generator"])
    variables = [v for n, v in model.parameters().items() if n not in generator]
    optimizer = keras.optimizers.Adam(1e-2)
    flat = {k: tf.constant(v) for k, v in features.items()}
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(flat) - ratings))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def test_meta_embedding_trainer_lowers_the_cold_loss_and_trains_only_the_generator():
    model = small_model("metaemb", seed=7, use_ids=False)
    features, ratings = _item_rows()
    _fit_base(model, features, ratings)
    frozen = {n: v.numpy().copy() for n, v in model.parameters().items() if n not in model.param_groups()["generator"]}
    batches = item_task_batches(features, ratings, rows_per_phase=4, items_per_batch=8, seed=0)
    probe = [next(item_task_batches(features, ratings, rows_per_phase=4, items_per_batch=16, seed=9)) for _ in range(3)]

    def cold_loss():
        return np.mean([float(tf.reduce_mean(meta_embedding_losses(model, model.variable_values(), a, b, 0.1)[0]))
                        for a, b in probe])

    before = cold_loss()
    history = MetaEmbeddingTrainer(model, keras.optimizers.Adam(1e-2), cold_weight=0.5).fit(batches, 150)
    after = cold_loss()
    assert after < 0.9 * before, (before, after)
    assert set(history) == {"loss", "cold_loss", "warm_loss"}
    for name, value in frozen.items():
        np.testing.assert_array_equal(model.parameters()[name].numpy(), value, err_msg=name)


def test_meta_embedding_inputs_are_checked():
    features, ratings = _item_rows(rows=40)
    with pytest.raises(ValueError, match="No item has 40 ratings"):
        next(item_task_batches(features, ratings, rows_per_phase=20))
    with pytest.raises(ValueError, match="must be \\[R\\]"):
        next(item_task_batches(features, ratings[:10]))
    with pytest.raises(TypeError, match="needs a MetaEmb"):
        MetaEmbeddingTrainer(small_model("melu"), keras.optimizers.Adam())
    with pytest.raises(ValueError, match="cold_weight"):
        MetaEmbeddingTrainer(small_model("metaemb"), keras.optimizers.Adam(), cold_weight=2.0)
