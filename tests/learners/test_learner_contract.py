"""Every registered learner: adaptation, masks, XLA parity, serialisation, clear refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import learner_checks as checks
from helpers import random_episode, tiny_melu
from tfmetarec import learners
from tfmetarec.config import LEARNERS
from tfmetarec.models.base import MetaModel

NAMES = learners.available()


def test_registry_lists_every_learner():
    assert set(NAMES) == set(checks.KINDS) == set(LEARNERS)  # the CLI's --learner choices
    assert learners.get("FOMAML") is learners.MAML  # a named option set of MAML
    assert learners.create("fomaml", tiny_melu()).first_order
    assert learners.create("meta_sgd", tiny_melu()).learn_inner_lr == "per_parameter"
    with pytest.raises(ValueError, match="fomaml.*first_order=True.*'maml'"):
        learners.create("fomaml", tiny_melu(), first_order=False)
    with pytest.raises(ValueError, match="available"):
        learners.get("nope")


def test_gradient_based_flag():
    for name, kind in checks.KINDS.items():  # metaemb_generator takes a gradient step on an embedding
        assert checks.build(name).gradient_based == (kind == checks.GRADIENT or name in checks.ITEM_TASKS), name
    assert learners.Pretrain(tiny_melu(), finetune_steps=2).gradient_based


@pytest.mark.parametrize("name", NAMES)
def test_adaptation_uses_the_support(name):
    checks.check_adaptation(name)


@pytest.mark.parametrize("name", NAMES)
def test_padding_rows_are_irrelevant_and_empty_support_is_finite(name):
    checks.check_padding_and_empty_support(name)


@pytest.mark.parametrize("name", ["prototype", "matching"])
def test_empty_support_scores_the_user_feature_prior(name):
    learner = checks.build(name)
    episode = random_episode(seed=3, tasks=2, support_sizes=[0, 0])
    np.testing.assert_allclose(learner(episode).numpy(), learner.model(episode["query"]).numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_xla_step_matches_eager_step(name):
    checks.check_xla_matches_eager(name)


@pytest.mark.parametrize("name", NAMES)
def test_keras_round_trip(name, tmp_path):
    checks.check_round_trip(name, tmp_path)


class _ItemOnly(MetaModel):
    """A model with a forward pass but none of the user-state hooks."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_weight(shape=(), initializer="zeros", name="w")
        self.built = True

    def forward(self, params, features):
        return tf.cast(features["item_id"], tf.float32) * params["w"]


@pytest.mark.parametrize(
    ("name", "missing"),
    [("prototype", "item representation"), ("matching", "item representation"), ("task_encoder", "item representation")],
)
def test_learner_refuses_a_model_without_its_hooks(name, missing):
    with pytest.raises(ValueError, match=rf"{type(learners.create(name, tiny_melu())).__name__}.*_ItemOnly.*{missing}"):
        learners.create(name, _ItemOnly())


def test_item_statistics_baselines():
    counts = np.array([7.0, 10, 0, 2, 40])
    sums = np.array([7.0, 45, 0, 2, 80])  # item 0 (OOV) is ignored
    mean = (45 + 2 + 80) / 52
    item_mean = learners.ItemMean(tiny_melu(), num_items=5, shrinkage=2.0)
    item_mean.set_statistics(counts, sums)
    query = {"item_id": np.array([[0, 1, 2, 3, 4, 9]], "int32")}
    expected = [mean, (45 + 2 * mean) / 12, mean, (2 + 2 * mean) / 4, (80 + 2 * mean) / 42, mean]
    np.testing.assert_allclose(item_mean.score({}, query).numpy()[0], expected, rtol=1e-5)
    popularity = learners.Popularity(tiny_melu(), num_items=5)
    popularity.set_statistics(counts, sums)
    pred = popularity.score({}, query).numpy()[0]
    assert np.all(np.abs(pred - mean) <= 0.011)
    assert np.argsort(-pred[1:5]).tolist() == [3, 0, 2, 1]  # items 4, 1, 3, 2 by count


def test_item_statistics_from_encoded_ratings(small_synthetic):
    data, split, encoded = small_synthetic
    learner = learners.ItemMean(tiny_melu(), num_items=encoded.spec.num_items)
    learner.fit_statistics(encoded.item_vocab_ids(split.meta_train["item"]), split.meta_train["rating"].to_numpy())
    table = learner.item_count.numpy()
    assert table[0] == 0 and table.sum() == len(split.meta_train[split.meta_train.item.isin(split.existing_items)])
    assert float(learner.global_mean_value.numpy()) == pytest.approx(split.meta_train.rating.mean(), rel=1e-5)


def test_empty_meta_gradients_train_step_runs():
    learner = checks.build("item_mean")
    trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False)
    logs = trainer.train_step(random_episode(seed=1))
    assert np.isfinite(logs["loss"]) and int(trainer.step.numpy()) == 1


def test_item_statistics_reject_bad_input():
    learner = learners.ItemMean(tiny_melu(), num_items=5)
    with pytest.raises(ValueError, match="outside"):
        learner.fit_statistics(np.array([1, 5]), np.array([3.0, 4.0]))
    with pytest.raises(ValueError, match="NaN"):
        learner.fit_statistics(np.array([1, 2]), np.array([3.0, np.nan]))
    with pytest.raises(ValueError, match="same length"):
        learner.fit_statistics(np.array([1, 2]), np.array([3.0]))
