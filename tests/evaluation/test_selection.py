"""Choosing a training's checkpoint on validation tasks (held-out users and pseudo-new items)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmetarec.config import ExperimentConfig, ModelConfig, SplitConfig, TrainConfig
from tfmetarec.data import make_synthetic
from tfmetarec.evaluation.selection import CheckpointSelector
from tfmetarec.workflows import build_learner, build_model
from tfmetarec.workflows.prepare import prepare
from tfmetarec.workflows.train import load_run, train

DATA = make_synthetic(num_users=200, num_items=120, seed=3)
CONFIG = ExperimentConfig(
    model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
    split=SplitConfig(validation_item_fraction=0.2),
    train=TrainConfig(meta_steps=10, pretrain_steps=10, batch_size=8, jit_compile=False, select_every=5),
)


def _learner(config=CONFIG):
    prepared = prepare(config, DATA)
    return prepared, build_learner(config, build_model(config, prepared.encoded), prepared)


def test_the_best_scored_weights_are_put_back_and_survive_a_new_selector(tmp_path):
    prepared, learner = _learner()
    step = tf.Variable(0, dtype=tf.int64)
    folder = tmp_path / "selection"
    selector = CheckpointSelector(learner, prepared.encoded, prepared.validation_sets(), 5, step, folder)
    selector.on_train_begin()
    step.assign(3)
    selector.on_train_batch_end(0)
    assert selector.rows == []  # no multiple of 5 crossed yet
    step.assign(5)
    selector.on_train_batch_end(1)
    good = [v.numpy().copy() for v in learner.variables]
    good_score = selector.score()["score"]
    for v in learner.model.trainable_variables:  # much worse weights at the next scoring
        v.assign(v + 3.0)
    step.assign(10)
    selector.on_train_batch_end(2)
    selector.on_train_end()  # step 10 was scored already: no second row
    log = selector.log()
    assert log["step"].tolist() == [5, 10] and log["chosen"].tolist() == [True, False]
    assert log["score"].iloc[1] > log["score"].iloc[0]
    assert np.isclose(log["score"].iloc[0], log[["validation_MAE", "validation_items_MAE"]].iloc[0].mean())
    assert selector.restore_best() == 5
    for v, g in zip(learner.variables, good, strict=True):
        np.testing.assert_array_equal(v.numpy(), g)
    assert selector.score()["score"] == pytest.approx(good_score, abs=1e-6)

    again = CheckpointSelector(learner, prepared.encoded, prepared.validation_sets(), 5, step, folder)
    assert again.chosen_step == 5 and again.log()["step"].tolist() == [5, 10]
    _, other = _learner(ExperimentConfig(model=ModelConfig(embedding_dim=4, hidden_units=(6,)), split=CONFIG.split,
                                         train=CONFIG.train))
    with pytest.raises(ValueError, match="holds the best weights of another learner"):
        CheckpointSelector(other, prepared.encoded, prepared.validation_sets(), 5, step, folder)
    with pytest.raises(ValueError, match="every given task set is empty"):
        CheckpointSelector(learner, prepared.encoded, {}, 5, step)


def test_a_run_keeps_its_best_step_and_a_longer_run_continues_the_selection(tmp_path):
    run = train(CONFIG, tmp_path, verbose=0)
    for tag in ("learner", "baseline"):
        log = pd.read_csv(tmp_path / "selection" / tag / "selection.csv")
        assert log["step"].tolist() == [5, 10] and log["chosen"].sum() == 1
    log = pd.read_csv(tmp_path / "selection" / "learner" / "selection.csv")
    best = log.loc[log["chosen"], "score"].item()
    assert best == log["score"].min()
    assert run.history["learner"]["selected_step"] == [float(log.loc[log["chosen"], "step"].item())]
    reloaded = load_run(tmp_path)  # the saved learner is the chosen step's
    chooser = CheckpointSelector(reloaded.learner, reloaded.prepared.encoded, reloaded.prepared.validation_sets(), 5,
                                 tf.Variable(0, dtype=tf.int64), item_warmup=CONFIG.train.item_warmup)
    assert chooser.score()["score"] == pytest.approx(best, abs=1e-5)

    longer = ExperimentConfig(model=CONFIG.model, split=CONFIG.split,
                              train=TrainConfig(**{**CONFIG.train.__dict__, "meta_steps": 15}))
    train(longer, tmp_path, verbose=0)
    log = pd.read_csv(tmp_path / "selection" / "learner" / "selection.csv")
    assert log["step"].tolist() == [5, 10, 15] and log["chosen"].sum() == 1


class _Scripted(CheckpointSelector):
    """Scores from a script instead of the validation tasks, to steer the choice."""

    def __init__(self, scores, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.script = list(scores)

    def score(self):
        return {"score": self.script.pop(0)}


def test_training_stops_after_patience_scorings_without_a_better_step_and_keeps_the_best(tmp_path):
    from tfmetarec.learners import MetaTrainer
    from tfmetarec.workflows.train import sampler_for

    prepared, learner = _learner()
    trainer = MetaTrainer(learner, jit_compile=False)
    folder = tmp_path / "selection"
    selector = _Scripted([1.0, 0.9, 0.95, 0.97, 0.5], learner, prepared.encoded, prepared.validation_sets(), 5,
                         trainer.step, folder, patience=2)
    trainer.fit(sampler_for(prepared), 40, callbacks=[selector], verbose=0, checkpoint_dir=tmp_path / "ckpt")
    assert int(trainer.step.numpy()) == 20  # best at 10, then two scorings (15, 20) found nothing better
    assert selector.log()["step"].tolist() == [5, 10, 15, 20] and selector.exhausted
    last = [v.numpy().copy() for v in learner.variables]
    assert selector.restore_best() == 10
    assert any(not np.array_equal(v.numpy(), x) for v, x in zip(learner.variables, last, strict=True))

    # the same run resumed from its last checkpoint (step 20, the stop) stays stopped: no step is trained
    again = MetaTrainer(learner, jit_compile=False)
    resumed = _Scripted([], learner, prepared.encoded, prepared.validation_sets(), 5, again.step, folder, patience=2)
    again.fit(sampler_for(prepared), 40, callbacks=[resumed], verbose=0, checkpoint_dir=tmp_path / "ckpt")
    assert int(again.step.numpy()) == 20 and resumed.log()["step"].tolist() == [5, 10, 15, 20]


def test_choosing_by_ndcg_keeps_the_highest_scored_step_and_refuses_an_mae_choice(tmp_path):
    from tfmetarec.evaluation.protocol import evaluate_tasks

    prepared, learner = _learner()
    step = tf.Variable(0, dtype=tf.int64)
    sets = prepared.validation_sets()
    real = CheckpointSelector(learner, prepared.encoded, sets, 5, step, metric="nDCG@3")
    scored = real.score()
    for name, tasks in sets.items():  # the evaluation's own nDCG@3 of each validation set
        expected = evaluate_tasks(learner, prepared.encoded, tasks, ks=(3,), batch_size=32, jit_compile=False)
        assert scored[f"{name}_nDCG@3"] == pytest.approx(expected["nDCG@3"], abs=1e-6)

    folder = tmp_path / "selection"
    chooser = _Scripted([0.5, 0.7, 0.6], learner, prepared.encoded, sets, 5, step, folder, metric="nDCG@3")
    for s in (5, 10, 15):
        step.assign(s)
        chooser.on_train_batch_end(0)
    assert chooser.chosen_step == 10  # the highest, where MAE would keep the lowest (step 5)
    with pytest.raises(ValueError, match="chosen by validation nDCG@3, and this training chooses by MAE"):
        CheckpointSelector(learner, prepared.encoded, sets, 5, step, folder)
    with pytest.raises(ValueError, match="metric must be one of"):
        CheckpointSelector(learner, prepared.encoded, sets, 5, step, metric="RMSE")


def test_an_xla_evaluation_scores_the_packed_batches_as_the_graph_without_xla():
    from tfmetarec.evaluation.protocol import adapt_and_score_fn, predict_tasks
    from tfmetarec.tasks.samplers import EVAL_MIN_REAL, eval_batches

    prepared, learner = _learner()
    tasks = next(iter(prepared.validation_sets().values()))
    batches = list(eval_batches(prepared.encoded, tasks, batch_size=8))
    masks = [episode["support"]["mask"] for episode, _ in batches]
    assert len(batches) > 1 and sum(m.sum() for m in masks) / sum(m.size for m in masks) >= EVAL_MIN_REAL
    compiled = adapt_and_score_fn(learner, jit_compile=True)
    xla = predict_tasks(learner, prepared.encoded, tasks, batch_size=8, fn=compiled)
    plain = predict_tasks(learner, prepared.encoded, tasks, batch_size=8, jit_compile=False)
    for (p, t), (q, u) in zip(xla, plain, strict=True):
        np.testing.assert_allclose(p, q, atol=1e-5)
        np.testing.assert_array_equal(t, u)
    shapes = {(e["support"]["mask"].shape, e["query"]["mask"].shape) for e, _ in batches}
    assert compiled.experimental_get_tracing_count() == len(shapes)  # a program per shape
