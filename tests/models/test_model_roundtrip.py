"""Every registered model passes the shared model checks and runs under every learner
whose hooks it provides (tiny models, random episodes)."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import ITEM_FIELDS, ITEM_TABLE, NUM_ITEMS, USER_FIELDS, random_episode
from model_checks import check_model, small_model, support_losses
from tfmetarec import learners, models
from tfmetarec.types import SUPPORT

GRADIENT = ("maml", "fomaml", "meta_sgd", "reptile")
SUPPORT_BASED = ("prototype", "matching", "task_encoder")
OPTIONS = {
    **{name: dict(inner_steps=3, inner_lr=0.05) for name in GRADIENT},
    **{name: dict(hidden_dim=6, seed=3) for name in SUPPORT_BASED},
}


def test_registry_matches_the_cli_choices():
    from tfmetarec.config import MODELS

    assert models.available() == sorted(MODELS)
    assert models.get("Two_Tower") is models.TwoTower
    with pytest.raises(ValueError, match="Unknown model 'svd'.*two_tower"):
        models.get("svd")


@pytest.mark.parametrize("name", models.available())
def test_registered_model_passes_the_model_checks(name, tmp_path):
    check_model(small_model(name, seed=7), tmp_path)


@pytest.mark.parametrize("name", models.available())
def test_from_spec_passes_only_what_the_model_takes(name):
    cls = models.get(name)
    model = small_model(name, seed=1)
    assert model.num_items == 5 and [f[0] for f in model.item_fields] == ["year", "genres"]
    assert model.get_config()["user_fields"] == [f.to_config() for f in USER_FIELDS]
    with pytest.raises(ValueError, match="takes no option 'not_a_setting'; its options are"):
        small_model(name, not_a_setting=3)
    assert "seed" in cls.settings() and "num_items" not in cls.settings()


@pytest.mark.parametrize("learner_name", GRADIENT + SUPPORT_BASED)
@pytest.mark.parametrize("name", models.available())
def test_every_learner_runs_on_every_model(name, learner_name):
    model = small_model(name, seed=2)
    learner = learners.create(learner_name, model, **OPTIONS[learner_name])
    episode = random_episode(seed=5, tasks=3, support=6, query=4, support_sizes=[0, 2, 6])
    scores = learner(episode).numpy()
    assert scores.shape == (3, 4) and np.all(np.isfinite(scores))
    grads, logs = learner.meta_gradients(episode)
    assert np.isfinite(float(logs["loss"]))
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    if learner_name in GRADIENT:  # the default group ("decision") adapts: the support loss drops
        state = learner.adapt(episode[SUPPORT])
        before = support_losses(model, episode[SUPPORT])[1:]
        after = support_losses(model, episode[SUPPORT], state)[1:]
        assert np.all(after < before), (name, learner_name, before, after)


def test_learners_refuse_a_model_without_a_user_state():
    # a MetaEmb with no user inputs has no user representation
    model = models.MetaEmb(item_fields=ITEM_FIELDS, embedding_dim=4, hidden_units=(4,), num_items=NUM_ITEMS, seed=0)
    model.set_item_table(ITEM_TABLE)
    assert model.user_state_dim is None
    with pytest.raises(ValueError, match="needs a model with a user state"):
        learners.TaskEncoder(model, hidden_dim=4)
    # the metric learners only need item representations, so they still run
    episode = random_episode(seed=1, tasks=2)
    assert learners.PrototypeLearner(model, hidden_dim=4)(episode).shape == (2, 5)


# MeLU under MAML is tests/learners/test_learner_contract.py's (test_xla_step_matches_eager_step[maml])
@pytest.mark.parametrize("name", [m for m in models.available() if m != "melu"])
def test_xla_compiled_maml_step_matches_eager(name):
    import keras

    episode = random_episode(seed=12, tasks=3, support=6, query=4)
    results = []
    for jit in (False, True):
        learner = learners.MAML(small_model(name, seed=13), inner_steps=2, inner_lr=0.05)
        trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=jit)
        losses = [trainer.train_step(episode)["loss"] for _ in range(2)]
        results.append((losses, [v.numpy() for v in learner.weights]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
