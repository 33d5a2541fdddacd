"""Meta-gradients against finite differences (float64), Meta-SGD / MAML++ options, Reptile's update."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import learner_checks as checks
from helpers import random_episode, tiny_metaemb
from tfmetarec import learners
from tfmetarec.cli import build_parser, config_from_args
from tfmetarec.config import TrainConfig
from tfmetarec.learners.adaptation import LowRankKernel
from tfmetarec.learners.reptile import concat_parts
from tfmetarec.learners.task_slices import equal_slices, sliced_gradients
from tfmetarec.learners.trainer import default_task_chunks
from tfmetarec.objectives import QueryLoss
from tfmetarec.types import QUERY, SUPPORT, features_of


def _episode():
    return random_episode(seed=6, tasks=3, support=5, query=4, dtype="float64")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("meta_sgd", {}),
        ("maml", dict(learn_inner_lr="per_layer_step")),
        ("maml", dict(multi_step_loss=True)),
        ("maml", dict(learn_inner_lr="per_layer_step", multi_step_loss=True, msl_anneal_steps=10, adapt="all")),
        ("mamo", {}),
        ("prototype", {}),
        ("matching", {}),
        ("task_encoder", {}),
        ("task_encoder", dict(pooling="mean")),
    ],
)
def test_meta_gradients_match_finite_differences(name, options):
    learner = checks.build(name, seed=11, dtype="float64", **options)
    if getattr(learner, "msl_step", None) is not None:
        learner.msl_step.assign(4.0)  # annealing under way: weights neither uniform nor one-hot
    noise = np.random.default_rng(2)
    for value in getattr(learner, "task_values", []) + getattr(learner, "feature_values", []):
        value.assign(0.05 * noise.standard_normal(value.shape))  # memories off zero: the keys get gradients
    checks.check_finite_differences(learner, _episode())


def test_learned_rates_are_positive_start_at_inner_lr_and_are_trained():
    learner = checks.build("meta_sgd", inner_lr=0.07)
    rates = learner.adaptation_rates()
    assert len(rates) == 1
    for name in learner.adapt_names:
        assert rates[0][name].shape == learner.model.parameters()[name].shape
        np.testing.assert_allclose(rates[0][name].numpy(), 0.07, rtol=1e-5)
    lslr = checks.build("maml", learn_inner_lr="per_layer_step", inner_steps=3)
    assert len(lslr.adaptation_rates()) == 3
    assert all(r.shape == () for step in lslr.adaptation_rates() for r in step.values())
    trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(0.5), jit_compile=False)
    for _ in range(3):
        trainer.train_step(random_episode(seed=1))
    after = learner.adaptation_rates()[0]
    assert any(not np.allclose(after[n].numpy(), 0.07) for n in learner.adapt_names)
    assert all(np.all(after[n].numpy() > 0) for n in learner.adapt_names)


def test_msl_weights_anneal_toward_the_last_step():
    learner = checks.build("maml", inner_steps=4, multi_step_loss=True, msl_anneal_steps=10)
    np.testing.assert_allclose(learner.msl_weights().numpy(), [0.25] * 4)
    trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(1e-3), jit_compile=False)
    for _ in range(5):
        trainer.train_step(random_episode(seed=1))
    np.testing.assert_allclose(learner.msl_weights().numpy(), [0.125, 0.125, 0.125, 0.625], rtol=1e-6)
    learner.msl_step.assign(50.0)
    np.testing.assert_allclose(learner.msl_weights().numpy(), [0, 0, 0, 1])
    fixed = checks.build("maml", inner_steps=4, multi_step_loss=True)
    fixed.msl_step.assign(1e6)
    np.testing.assert_allclose(fixed.msl_weights().numpy(), [0.25] * 4)


def test_msl_with_all_weight_on_the_last_step_is_plain_maml():
    episode = _episode()
    msl = checks.build("maml", seed=2, dtype="float64", multi_step_loss=True, msl_anneal_steps=1)
    plain = checks.build("maml", seed=2, dtype="float64")
    msl.msl_step.assign(1.0)
    np.testing.assert_allclose(msl.meta_loss(episode)[0].numpy(), plain.meta_loss(episode)[0].numpy(), rtol=1e-12)


def test_fomaml_and_meta_sgd_are_maml_settings():
    assert checks.build("fomaml").first_order and not checks.build("maml").first_order
    assert checks.build("meta_sgd").learn_inner_lr == "per_parameter"
    with pytest.raises(ValueError, match="learn_inner_lr"):
        checks.build("maml", learn_inner_lr="per_layer")


@pytest.mark.parametrize("train_on_query", [True, False])
def test_reptile_outer_step_interpolates_toward_the_adapted_weights(train_on_query):
    eps = 0.3
    learner = checks.build("reptile", seed=3, train_on_query=train_on_query)
    episode = random_episode(seed=4, tasks=4, support=6, query=5)
    episode["task_mask"][3] = 0.0  # a padding task must not pull
    theta = {n: v.numpy().copy() for n, v in learner.model.parameters().items()}
    data = concat_parts(episode[SUPPORT], episode[QUERY]) if train_on_query else episode[SUPPORT]
    phi = {n: v.numpy()[:3].mean(0) for n, v in learner.sgd(data).items()}
    trainer = learners.MetaTrainer(learner, keras.optimizers.SGD(eps), jit_compile=True)
    trainer.train_step(episode)
    after = {n: v.numpy() for n, v in learner.model.parameters().items()}
    for n in learner.adapt_names:
        np.testing.assert_allclose(after[n], theta[n] + eps * (phi[n] - theta[n]), rtol=1e-4, atol=1e-6)
        assert np.abs(phi[n] - theta[n]).max() > 1e-4
    for n in set(theta) - set(learner.adapt_names):  # shared: first-order query-loss gradient
        assert not np.allclose(after[n], theta[n])


@pytest.mark.parametrize(("name", "options", "hoists", "low_rank"), [
    ("maml", {}, True, True),
    ("maml", dict(adapt="head"), True, False),
    ("maml", dict(adapt="all"), False, False),
    ("maml", dict(adapt="embeddings"), False, False),
    ("fomaml", {}, True, True),
    ("fomaml", dict(learn_inner_lr="per_layer_step"), True, True),
    ("meta_sgd", {}, True, False),
    ("maml", dict(learn_inner_lr="per_layer_step", multi_step_loss=True), True, True),
    ("reptile", {}, True, True),
    ("mamo", {}, True, True),
    ("maml on metaemb", {}, True, True),
])
def test_computing_what_does_not_adapt_once_leaves_the_meta_gradients_unchanged(name, options, hoists, low_rank):
    """The inner loop computes the field embeddings once per task when only decision layers adapt
    (``represent`` / ``decide``, MeLU and MetaEmb), and keeps the first decision layer's update as
    a low-rank product when its step sizes are scalars (``LowRankKernel``); the meta-gradients
    equal those of a forward pass at every step (float64, first and second order, every adapt
    group)."""
    if name == "maml on metaemb":
        keras.config.set_floatx("float64")
        try:
            model = tiny_metaemb(seed=11, dtype="float64", hidden=(5, 3))
            learner = learners.create("maml", model, dtype="float64", inner_steps=3, inner_lr=0.1)
        finally:
            keras.config.set_floatx("float32")
    else:
        learner = checks.build(name, seed=11, dtype="float64", **options)
    episode = _episode()
    model = learner.model
    names = learner.adapted_parameters()
    params = model.variable_values()
    represented = model.represent(params, features_of(episode[SUPPORT]), names)
    assert (represented is not None) == hoists
    uses = LowRankKernel.of(model, names, learner.adaptation_rates(), represented, params, False)
    assert (uses is not None) == low_rank
    hoisted, _ = learner.meta_gradients(episode)
    model.represent = lambda *args: None  # the whole forward pass at every step
    plain, _ = learner.meta_gradients(episode)
    assert len(hoisted) == len(plain) > 0
    for a, b, v in zip(hoisted, plain, learner.meta_variables(), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-13, err_msg=v.path)


def test_a_model_that_decides_otherwise_keeps_the_whole_decision_in_the_loop():
    """A subclass that changes ``_decide`` gets no low-rank first layer (it would skip the change)."""
    model = checks.build("maml", seed=1).model
    assert model.first_decision_layer() == ("decision_0_kernel", "decision_0_bias")

    class Shifted(type(model)):
        def _decide(self, params, x):
            return super()._decide(params, x) + 1.0

    model.__class__ = Shifted
    assert model.first_decision_layer() is None


@pytest.mark.parametrize("name", learners.available())
def test_meta_gradients_on_slices_of_the_task_batch_equal_the_whole_batch(name):
    """Every learner's ``task_gradients`` is a mean over real tasks (``splits_by_task``): on four
    equal slices of the task batch (uneven supports, the last slice holding only empty task slots)
    averaged by their real tasks, the meta-gradients and logs equal the whole batch's (float64)."""
    learner = checks.build(name, seed=11, dtype="float64")
    checks.at_generic_point(learner)
    assert learner.splits_by_task
    episode = checks.episode_for(name, seed=8, tasks=8, support=6, query=4, support_sizes=[6, 1, 3, 0, 5, 2, 4, 6])
    episode = {k: {n: a.astype("float64") if a.dtype.kind == "f" else a for n, a in v.items()}
               if isinstance(v, dict) else v.astype("float64") for k, v in episode.items()}
    episode["task_mask"][6:] = 0.0
    whole, whole_logs = learner.task_gradients(episode)
    parts, part_logs = sliced_gradients(learner.task_gradients, episode, 4)
    assert len(whole) == len(parts) == len(learner.meta_variables())
    for a, b, v in zip(whole, parts, learner.meta_variables(), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-13, err_msg=v.path)
    assert whole_logs.keys() == part_logs.keys()
    for key in whole_logs:
        np.testing.assert_allclose(float(part_logs[key]), float(whole_logs[key]), rtol=1e-10, err_msg=key)


def test_a_sliced_step_runs_its_slices_compiled_and_advances_the_learner_once(monkeypatch):
    """``MetaTrainer(task_chunks=2)`` under XLA: the slices' gradients compile for half the batch,
    the MSL annealing step advances once per meta-step, and the weights equal an unsliced
    trainer's; a loss that ties tasks together (the in-batch retrieval term), an odd batch and a
    strategy are not sliced (or refused); the default is 2 under XLA on a CPU, else 1."""
    episode = random_episode(seed=3, tasks=4, support=5, query=4)
    weights = []
    for chunks in (1, 2):
        learner = checks.build("maml", seed=2, multi_step_loss=True, msl_anneal_steps=10)
        trainer = learners.MetaTrainer(learner, keras.optimizers.Adam(1e-2), jit_compile=True, task_chunks=chunks)
        assert trainer.sliced == (chunks == 2)
        for _ in range(2):
            trainer.train_step(episode)
        assert float(learner.msl_step.numpy()) == 2.0
        weights.append([v.numpy() for v in learner.weights])
    traced = trainer._compiled_slice_gradients.experimental_get_tracing_count()
    assert traced == 1 and trainer._compiled_whole_step.experimental_get_tracing_count() == 0
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    trainer.train_step(random_episode(seed=3, tasks=3, support=5, query=4))  # 3 tasks: one piece
    assert trainer._compiled_whole_step.experimental_get_tracing_count() == 1
    retrieval = checks.build("maml", query_loss=QueryLoss(retrieval_weight=0.5))
    assert not retrieval.splits_by_task and not learners.MetaTrainer(retrieval, task_chunks=2).sliced
    with monkeypatch.context() as patch:  # a learner with its own meta_gradients keeps its whole step
        patch.setattr(learners.MAML, "meta_gradients", lambda self, episode: ([], {}))
        assert not learners.MetaTrainer(checks.build("maml"), task_chunks=2).sliced
    gpu = bool(tf.config.list_logical_devices("GPU"))
    assert learners.MetaTrainer(checks.build("maml"), jit_compile=True).task_chunks == (1 if gpu else 2)
    assert learners.MetaTrainer(checks.build("maml"), jit_compile=False).task_chunks == 1
    with pytest.raises(ValueError, match="train.task_chunks splits a one-device step"):
        TrainConfig(task_chunks=2, strategy="mirrored")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # one core: nothing runs at once
    assert default_task_chunks(True) == 1
    assert equal_slices(32, 2) == 2 and equal_slices(30, 4) == 3 and equal_slices(7, 2) == 1
    assert equal_slices(None, 2) == 1
    with pytest.raises(ValueError, match="task_chunks must be >= 1"):
        learners.MetaTrainer(checks.build("maml"), task_chunks=0)
    with pytest.raises(ValueError, match="train.task_chunks must be >= 1"):
        TrainConfig(task_chunks=0)
    assert config_from_args(build_parser().parse_args(["train", "--task-chunks", "3"])).train.task_chunks == 3
