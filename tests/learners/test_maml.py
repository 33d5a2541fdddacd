"""MAML: inner loop, exact second-order meta-gradients, first order, XLA parity."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import random_episode, tiny_melu
from learner_checks import at_generic_point
from tfmetarec.learners import MAML, MetaTrainer
from tfmetarec.learners.adaptation import inner_loop
from tfmetarec.learners.losses import task_mse
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, features_of


def _support_loss(learner, episode, state):
    s = episode[SUPPORT]
    pred = learner.score(state, features_of(s))
    return task_mse(pred, s[RATING], s[MASK]).numpy()


@pytest.mark.parametrize("adapt", ["decision", "all", "head"])
def test_inner_loop_lowers_every_tasks_support_loss(adapt):
    learner = MAML(tiny_melu(seed=1), inner_steps=5, inner_lr=0.05, adapt=adapt)
    episode = random_episode(seed=2, tasks=6)
    before = _support_loss(learner, episode, {})
    after = _support_loss(learner, episode, learner.adapt(episode[SUPPORT]))
    assert after.shape == (6,)
    assert np.all(after < before - 1e-4), (before, after)


def test_empty_support_falls_back_to_prior_and_never_nans():
    learner = MAML(tiny_melu(seed=1), inner_steps=3, inner_lr=0.1)
    episode = random_episode(seed=3, tasks=3, support_sizes=[0, 1, 6])
    state = learner.adapt(episode[SUPPORT])
    prior = learner.model.variable_values()
    assert all(np.isfinite(v.numpy()).all() for v in state.values())
    for name in learner.adapt_names:  # the rest of the state is the rating history update() keeps
        value = state[name]
        np.testing.assert_array_equal(value[0].numpy(), prior[name].numpy())  # no rows: untouched
        assert not np.allclose(value[2].numpy(), prior[name].numpy())  # six rows: moved


def test_padding_rows_do_not_change_adaptation():
    learner = MAML(tiny_melu(seed=4), inner_steps=2, inner_lr=0.1)
    episode = random_episode(seed=5, tasks=2, support=8, support_sizes=[3, 5])
    state = learner.adapt(episode[SUPPORT])
    scrambled = {k: dict(v) if isinstance(v, dict) else v for k, v in episode.items()}
    s = {k: v.copy() for k, v in episode[SUPPORT].items()}
    s["rating"][:, 6:] = 99.0  # padding rows of both tasks
    s["user_fields"][:, 6:] = 0
    s["item_id"][:, 6:] = 7
    scrambled[SUPPORT] = s
    other = learner.adapt(s)
    for name in state:
        np.testing.assert_allclose(state[name].numpy(), other[name].numpy(), atol=1e-6)


def _float64_learner(first_order=False, steps=2, adapt="decision"):
    keras.config.set_floatx("float64")
    try:
        model = tiny_melu(seed=11, dtype="float64", hidden=(5, 3))
        return MAML(model, inner_steps=steps, inner_lr=0.1, first_order=first_order, adapt=adapt, dtype="float64")
    finally:
        keras.config.set_floatx("float32")


@pytest.mark.parametrize("adapt", ["decision", "all"])
def test_second_order_meta_gradient_matches_finite_differences(adapt):
    learner = _float64_learner(adapt=adapt)
    at_generic_point(learner)
    episode = random_episode(seed=6, tasks=3, support=5, query=4, dtype="float64")
    grads, _ = learner.meta_gradients(episode)
    variables = learner.meta_variables()
    rng = np.random.default_rng(0)
    eps = 1e-5
    for var, grad in zip(variables, grads):
        grad = grad.numpy()
        assert np.abs(grad).max() > 0, f"zero meta-gradient for {var.name}"
        direction = rng.standard_normal(var.shape)
        original = var.numpy().copy()
        var.assign(original + eps * direction)
        plus = float(learner.meta_loss(episode)[0])
        var.assign(original - eps * direction)
        minus = float(learner.meta_loss(episode)[0])
        var.assign(original)
        numeric = (plus - minus) / (2 * eps)
        analytic = float(np.sum(grad * direction))
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), var.name


def test_first_order_drops_exactly_the_second_order_terms():
    episode = random_episode(seed=7, tasks=3, support=5, query=4, dtype="float64")
    second = _float64_learner(first_order=False)
    first = _float64_learner(first_order=True)
    first.set_weights(second.get_weights())
    g2, _ = second.meta_gradients(episode)
    g1, _ = first.meta_gradients(episode)
    names = [v.name for v in second.meta_variables()]
    differs = {n: not np.allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-10) for n, a, b in zip(names, g1, g2)}
    assert all(differs[n] for n in second.adapt_names), differs
    # FOMAML's gradient for an adapted parameter is the query gradient at the adapted point.
    state = first.adapt(episode[SUPPORT])
    fast = {n: tf.Variable(v) for n, v in state.items()}
    with tf.GradientTape() as tape:
        loss, _ = _query_loss(first, episode, fast)
    direct = tape.gradient(loss, fast)
    for n, g in zip(names, g1):
        if n in fast:
            np.testing.assert_allclose(g.numpy(), tf.reduce_sum(direct[n], 0).numpy(), rtol=1e-8, atol=1e-12)


def _query_loss(learner, episode, fast):
    q = episode[QUERY]
    pred = learner.score({n: v for n, v in fast.items()}, features_of(q))
    per_task = task_mse(pred, q[RATING], q[MASK])
    return tf.reduce_mean(per_task), per_task


def test_zero_inner_steps_make_first_and_second_order_equal():
    episode = random_episode(seed=8, dtype="float64")
    a = _float64_learner(first_order=False, steps=0)
    b = _float64_learner(first_order=True, steps=0)
    b.set_weights(a.get_weights())
    for x, y in zip(a.meta_gradients(episode)[0], b.meta_gradients(episode)[0]):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-12)


def test_vectorised_inner_loop_equals_one_task_at_a_time():
    learner = MAML(tiny_melu(seed=9), inner_steps=3, inner_lr=0.05, adapt="all")
    episode = random_episode(seed=10, tasks=4, support_sizes=[1, 3, 6, 2])
    batched = learner.adapt(episode[SUPPORT])
    for t in range(4):
        one = {k: v[t : t + 1] for k, v in episode[SUPPORT].items()}
        single, _ = inner_loop(learner.model, learner.model.variable_values(), learner.adapt_names, one, 3,
                               learner.adaptation_rates())
        for n in learner.adapt_names:
            np.testing.assert_allclose(batched[n][t].numpy(), single[n][0].numpy(), rtol=1e-5, atol=1e-6)


def test_xla_step_matches_eager_step():
    episode = random_episode(seed=12, tasks=8, support=6, query=5)
    results = []
    for jit in (False, True):
        learner = MAML(tiny_melu(seed=13), inner_steps=3, inner_lr=0.05)
        trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=jit)
        losses = [trainer.train_step(episode)["loss"] for _ in range(3)]
        results.append((losses, [v.numpy() for v in learner.meta_variables()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_meta_training_lowers_query_loss_and_resumes_from_checkpoint(tmp_path):
    episode = random_episode(seed=14, tasks=8)
    learner = MAML(tiny_melu(seed=15), inner_steps=2, inner_lr=0.05)
    trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False)
    history = trainer.fit([episode] * 40, 40, verbose=0, checkpoint_dir=tmp_path / "ck", checkpoint_every=20,
                          tensorboard_dir=tmp_path / "tb")
    assert history["loss"][-1] < history["loss"][0]
    assert list((tmp_path / "tb").iterdir()), "no TensorBoard events written"
    # a new trainer restores step, weights and optimizer state, then goes on to 50 steps
    fresh = MAML(tiny_melu(seed=99), inner_steps=2, inner_lr=0.05)
    resumed = MetaTrainer(fresh, keras.optimizers.Adam(1e-2), jit_compile=False)
    more = resumed.fit([episode] * 10, 50, verbose=0, checkpoint_dir=tmp_path / "ck")
    assert int(resumed.step.numpy()) == 50 and len(more["loss"]) == 10
    np.testing.assert_allclose(more["loss"][0], history["loss"][-1], rtol=0.2)


def test_serialisation_round_trip(tmp_path):
    learner = MAML(tiny_melu(seed=16), inner_steps=2, inner_lr=0.07, first_order=True, adapt="head")
    episode = random_episode(seed=17)
    learner(episode)
    path = tmp_path / "maml.keras"
    learner.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, MAML)
    assert (reloaded.inner_steps, reloaded.inner_lr, reloaded.first_order) == (2, 0.07, True)
    np.testing.assert_array_equal(reloaded(episode).numpy(), learner(episode).numpy())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(tiny_melu(), inner_steps=-1)
    with pytest.raises(ValueError, match="no parameter group"):
        MAML(tiny_melu(), adapt="encoder")
    with pytest.raises(TypeError, match="MetaModel"):
        MAML(keras.Sequential([keras.layers.Dense(1)]))


def test_mamo_starts_each_task_from_its_memories_and_is_maml_while_they_are_empty():
    from tfmetarec.learners import MemoryAugmentedMAML

    episode = random_episode(seed=4, tasks=4)
    maml = MAML(tiny_melu(seed=3), inner_steps=2, inner_lr=0.1)
    mamo = MemoryAugmentedMAML(tiny_melu(seed=3), inner_steps=2, inner_lr=0.1, memory_slots=3)
    plain, personal = maml.adapt(episode[SUPPORT]), mamo.adapt(episode[SUPPORT])
    for name in maml.adapt_names:
        np.testing.assert_allclose(personal[name], plain[name], rtol=1e-5, atol=1e-6)
    by_feature, by_task = mamo.memory_reads(episode[SUPPORT])
    assert by_feature.shape == by_task.shape == (4, 3)
    np.testing.assert_allclose(tf.reduce_sum(by_task, -1), np.ones(4), rtol=1e-5)
    noise = np.random.default_rng(0)
    for value in mamo.task_values + mamo.feature_values:
        value.assign(noise.standard_normal(value.shape).astype("float32"))
    start = mamo.task_start(episode[SUPPORT])
    name = mamo.adapt_names[0]
    weights = mamo.model.variable_values()[name].numpy()
    offsets = start[name].numpy() - weights[None]
    assert np.abs(offsets).max() > 0.1 and not np.allclose(offsets[0], offsets[1])  # each task its own start
    expected = (np.tensordot(by_task.numpy(), mamo.task_values[0].numpy(), axes=[[1], [0]])
                + np.tensordot(by_feature.numpy(), mamo.feature_values[0].numpy(), axes=[[1], [0]]))
    np.testing.assert_allclose(offsets, expected, rtol=1e-4, atol=1e-5)
