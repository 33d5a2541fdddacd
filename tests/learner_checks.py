"""Checks every registered learner must pass, shared by the tests/learners/test_learner_*.py files."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers import random_episode as any_episode
from helpers import tiny_melu, tiny_metaemb
from tfmetarec import learners
from tfmetarec.learners import MetaLearner, MetaTrainer
from tfmetarec.learners.losses import task_mse
from tfmetarec.types import MASK, RATING, SUPPORT, features_of

GRADIENT = "gradient"  # adapts by inner SGD: the support loss must drop
SUPPORT_BASED = "support"  # metric / model-based: scores depend on the support
STATIC = "static"  # no adaptation (baselines)

KINDS = {
    "maml": GRADIENT,
    "fomaml": GRADIENT,
    "meta_sgd": GRADIENT,
    "reptile": GRADIENT,
    "mamo": GRADIENT,
    "prototype": SUPPORT_BASED,
    "matching": SUPPORT_BASED,
    "task_encoder": SUPPORT_BASED,
    "pretrain": STATIC,
    "popularity": STATIC,
    "item_mean": STATIC,
    "metaemb_generator": SUPPORT_BASED,
}
ITEM_TASKS = ("metaemb_generator",)
"""Learners whose tasks are items: their episodes rate one item per task."""

SMALL = {
    "maml": dict(inner_steps=3, inner_lr=0.1),
    "fomaml": dict(inner_steps=3, inner_lr=0.1),
    "meta_sgd": dict(inner_steps=3, inner_lr=0.1),
    "reptile": dict(inner_steps=3, inner_lr=0.1),
    "mamo": dict(inner_steps=3, inner_lr=0.1, memory_slots=4),
    "prototype": dict(hidden_dim=6, seed=3),
    "matching": dict(hidden_dim=6, seed=3),
    "task_encoder": dict(hidden_dim=6, seed=3),
    "pretrain": {},
    "popularity": dict(num_items=5),
    "item_mean": dict(num_items=5),
    "metaemb_generator": dict(warm_lr=0.5),
}


def build(name: str, seed: int = 0, dtype: str | None = None, **kwargs: Any) -> MetaLearner:
    """A registered learner around a tiny MeLU (float64 when asked), item tables filled."""
    options = {**SMALL[name], **kwargs}
    if dtype is not None:
        keras.config.set_floatx(dtype)
    try:
        tiny = tiny_metaemb if name in ITEM_TASKS else tiny_melu
        model = tiny(seed=seed, dtype=dtype, hidden=(5, 3) if dtype == "float64" else (8, 4))
        learner = learners.create(name, model, dtype=dtype, **options)
    finally:
        keras.config.set_floatx("float32")
    if learner.needs_training_ratings:
        rng = np.random.default_rng(seed)
        counts = rng.integers(0, 20, learner.num_items).astype("float64")
        learner.set_statistics(counts, counts * rng.uniform(1, 5, learner.num_items))
    return learner


def episode_for(name: str, seed: int = 0, **kwargs: Any) -> dict:
    """A random episode of the tasks learner ``name`` adapts to (item tasks for item learners)."""
    return any_episode(seed, item_tasks=name in ITEM_TASKS, **kwargs)


def copy_episode(episode: dict) -> dict:
    return {k: {n: a.copy() for n, a in v.items()} if isinstance(v, dict) else v.copy() for k, v in episode.items()}


def support_loss(learner: MetaLearner, episode: dict, state: dict) -> np.ndarray:
    s = episode[SUPPORT]
    return task_mse(learner.score(state, features_of(s)), s[RATING], s[MASK]).numpy()


def check_adaptation(name: str) -> None:
    """Gradient-based: every task's support loss drops. Support-based: one support
    rating changes the scores. Static: scores ignore the support."""
    learner = build(name, seed=1)
    episode = episode_for(name, seed=2, tasks=4, support=6, query=5)
    base = learner(episode).numpy()
    if KINDS[name] == GRADIENT:
        params = learner.model.variable_values()
        before = support_loss(learner, episode, {n: tf.broadcast_to(params[n][None], (4, *params[n].shape))
                                                  for n in learner.adapt_names})
        after = support_loss(learner, episode, learner.adapt(episode[SUPPORT]))
        assert np.all(after < before - 1e-4), (name, before, after)
    changed = copy_episode(episode)
    old = changed[SUPPORT][RATING][1, 2]
    changed[SUPPORT][RATING][1, 2] = 1.0 if old >= 3 else 5.0
    moved = np.abs(learner(changed).numpy() - base).max(axis=1)
    if KINDS[name] == STATIC:
        assert moved.max() == 0.0, (name, moved)
    else:
        assert moved[1] > 1e-6, (name, moved)
        np.testing.assert_array_equal(moved[[0, 2, 3]], 0.0)  # the other tasks are independent


def check_padding_and_empty_support(name: str) -> None:
    """Padding rows never matter; an empty support gives finite scores."""
    learner = build(name, seed=4)
    episode = episode_for(name, seed=5, tasks=3, support=8, support_sizes=[0, 3, 5])
    scores = learner(episode).numpy()
    assert np.all(np.isfinite(scores)), (name, scores)
    scrambled = copy_episode(episode)
    s = scrambled[SUPPORT]
    s[RATING][:, 5:] = 99.0
    s["item_id"][:, 5:] = 7
    s["user_fields"][:, 5:] = 0
    s[RATING][0, :] = -50.0  # the empty task: every row is padding
    np.testing.assert_allclose(learner(scrambled).numpy(), scores, rtol=1e-6, atol=1e-6)
    state = learner.adapt(episode[SUPPORT])
    for key, value in state.items():
        assert value.shape[0] == 3 and np.all(np.isfinite(value.numpy())), (name, key)


def check_xla_matches_eager(name: str, steps: int = 2) -> None:
    """The XLA-compiled MetaTrainer step, on two slices of the task batch, gives the eager
    step's numbers (the whole batch at once)."""
    episode = episode_for(name, seed=12, tasks=4, support=6, query=5)
    results = []
    for jit in (False, True):
        learner = build(name, seed=13)
        trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=jit, task_chunks=1 + jit)
        losses = [trainer.train_step(episode)["loss"] for _ in range(steps)]
        results.append((losses, [v.numpy() for v in learner.weights]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def check_round_trip(name: str, path) -> None:
    """``.keras`` save and reload give identical outputs and weights (learned rates included)."""
    learner = build(name, seed=16)
    episode = episode_for(name, seed=17)
    if learner.meta_variables():  # move the weights off their initial values first
        MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=False).train_step(episode)
    file = path / f"{name}.keras"
    learner.save(file)
    reloaded = keras.saving.load_model(file)
    assert type(reloaded) is type(learner)
    assert reloaded.get_config().keys() == learner.get_config().keys()
    for a, b in zip(learner.weights, reloaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(reloaded(episode).numpy(), learner(episode).numpy())


def at_generic_point(learner: MetaLearner, scale: float = 0.05) -> None:
    """Move the model's zero-initialised biases off zero. With them at zero, a row whose
    hidden units are all off puts the next layer's pre-activation exactly on a ReLU kink,
    where the inner step's gradient (ReluGrad) jumps and finite differences are meaningless."""
    noise = np.random.default_rng(1)
    for v in learner.model.trainable_variables:
        if v.name.endswith("_bias"):
            v.assign(v.numpy() + scale * noise.standard_normal(v.shape))


def check_finite_differences(learner: MetaLearner, episode: dict, rel: float = 1e-5) -> None:
    """Meta-gradients (float64) match central differences of ``meta_loss`` along a
    random direction, and none is identically zero."""
    at_generic_point(learner)
    counters = [(v, v.numpy()) for v in learner.non_trainable_weights]
    grads, _ = learner.meta_gradients(episode)
    for var, value in counters:  # e.g. the MSL annealing step, advanced by meta_gradients
        var.assign(value)
    rng = np.random.default_rng(0)
    eps = 1e-5
    for var, grad in zip(learner.meta_variables(), grads):
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
        assert abs(analytic - numeric) <= rel * abs(numeric) + 1e-8, (var.name, analytic, numeric)
