"""Train a run: the configured learner and the global baseline, saved in a run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.config import SELECT_METRICS, ExperimentConfig
from tfmetarec.data import ColdStartSplit, InteractionData
from tfmetarec.data.published import load_split
from tfmetarec.evaluation.selection import CheckpointSelector
from tfmetarec.learners import MetaLearner, MetaTrainer, Pretrain
from tfmetarec.learners.distribute import check_batch, is_chief, is_distributed, make_strategy
from tfmetarec.run_folder import BASELINE, RunFolder, RunFolderError
from tfmetarec.tasks.samplers import EpisodeSampler
from tfmetarec.workflows.build import build_baseline, build_learner, build_model
from tfmetarec.workflows.prepare import Prepared, SplitSource, load_data, prepare


@dataclass
class Run:
    """A trained experiment: the meta-learner, the global baseline and their data."""

    config: ExperimentConfig
    prepared: Prepared
    learner: MetaLearner
    baseline: Pretrain
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    finetune_lr: float | None = None
    """The fine-tuning baseline's step size, once chosen on the validation users (see
    :func:`tfmetarec.workflows.evaluate.finetune_lr`)."""


def sampler_for(prepared: Prepared) -> EpisodeSampler:
    """The seeded episode stream a run meta-trains on."""
    config = prepared.config
    tc = config.train
    if tc.fixed_tasks and ("role" not in prepared.train_ratings or (prepared.train_ratings["role"] == "").any()):
        raise ValueError("train.fixed_tasks trains on a published split's given support/query tasks, but the "
                         "meta-training rows have no role; give a split file with roles or drop fixed_tasks.")
    return EpisodeSampler(prepared.encoded, prepared.train_ratings, batch_size=tc.batch_size,
                          query_size=config.split.query_size, max_support=tc.max_support, seed=tc.seed,
                          task_key=config.task_key, fixed=tc.fixed_tasks, fit_buckets=tc.fit_buckets,
                          id_dropout=tc.id_dropout, trim_supports=tc.trim_supports,
                          smallest_bucket=tc.smallest_bucket, min_real=tc.padded_min_real)


def fit_learner(
    learner: MetaLearner,
    prepared: Prepared,
    steps: int,
    folder: RunFolder | None = None,
    tag: str = "learner",
    verbose: int = 0,
    checkpoint_every: int = 100,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
) -> dict[str, list[float]]:
    """Meta-train ``learner`` on the prepared training ratings for ``steps`` steps.

    With a run ``folder``, a checkpoint (weights, optimizer, step and the episode stream's
    state) is written every ``checkpoint_every`` steps and the latest one is resumed.
    A learner with nothing to train (no meta-variables) returns at once. With a
    ``strategy`` (the learner built under its scope), each replica trains on its share
    of every global batch of ``config.train.batch_size`` tasks (see ``MetaTrainer``).
    With ``config.train.select_every`` (and more steps than that), the learner is scored on the
    validation tasks every that many steps and ends with the weights of the best-scored step
    (:class:`CheckpointSelector`; its log and best weights are kept in ``folder.selection(tag)``;
    the checkpoints keep the last step's, so a longer run continues from there); with
    ``config.train.select_patience``, it stops once that many scorings in a row found nothing
    better.
    """
    if not learner.meta_variables():
        return {}
    if learner.task_key is not None and learner.task_key != prepared.config.task_key:
        raise ValueError(f"The {type(learner).__name__} learner trains on {learner.task_key} tasks; set "
                         f"task_key={learner.task_key!r} (--task-key {learner.task_key}).")
    tc = prepared.config.train
    if tc.id_dropout and not learner.model.embeds_ids:
        raise ValueError(f"train.id_dropout hides ID embeddings, and this {type(learner.model).__name__} has none: "
                         "set model.use_ids=true (--set model.use_ids=true) or leave id_dropout at 0.")
    check_batch(tc.batch_size, strategy if is_distributed(strategy) else None)
    sampler = sampler_for(prepared)
    with strategy.scope() if is_distributed(strategy) else contextlib.nullcontext():
        optimizer = keras.optimizers.Adam(tc.outer_lr)
    trainer = MetaTrainer(learner, optimizer, jit_compile=tc.jit_compile, steps_per_execution=tc.steps_per_execution,
                          strategy=strategy, task_chunks=tc.task_chunks)
    selector = None
    # a training of at most select_every steps has one candidate, its last step: nothing to choose.
    # Every worker scores alike; only the chief keeps the files.
    if tc.select_every and steps > tc.select_every and prepared.validation_sets():
        keep = folder is not None and is_chief(strategy)
        selector = CheckpointSelector(learner, prepared.encoded, prepared.validation_sets(), tc.select_every,
                                      trainer.step, folder.selection(tag) if keep else None, tc.item_warmup,
                                      tc.batch_size, tc.select_patience, tc.select_metric)
    history = trainer.fit(
        sampler,
        steps,
        callbacks=[*(callbacks or []), *([selector] if selector else [])],
        verbose=verbose,
        checkpoint_dir=None if folder is None else folder.checkpoints(tag),
        tensorboard_dir=None if folder is None else folder.logs(tag),
        checkpoint_every=checkpoint_every,
    )
    if selector is not None:
        chosen = selector.restore_best()
        if chosen is not None:
            history["selected_step"] = [float(chosen)]
            history["selected_validation_score"] = [selector.best[1]]
        if selector.exhausted and int(trainer.step.numpy()) < steps:
            history["stopped_step"] = [float(trainer.step.numpy())]
    return history


def train(
    config: ExperimentConfig,
    workdir: str | os.PathLike | None = None,
    verbose: int = 1,
    data: InteractionData | None = None,
    *,
    mode: str = "continue",
    checkpoint_every: int = 100,
    split: SplitSource | None = None,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
) -> Run:
    """Meta-train the configured learner and the global baseline; save to ``workdir``.

    ``workdir`` receives ``config.json`` (at once), ``encoder.json``, ``split/`` (counts
    per partition; a published split's rows), ``learner.keras``, ``baseline.keras``,
    TensorBoard logs and checkpoints every ``checkpoint_every`` steps. A folder holding a
    run with the same config is continued from its checkpoints; one with another config
    is refused (:class:`~tfmetarec.run_folder.RunFolderError`, naming the differing keys)
    unless ``mode="overwrite"``; ``mode="resume"`` insists on a run to continue.

    ``config.train.strategy`` (``default``, ``mirrored``, ``multi_worker``; or a
    ``strategy`` passed here) distributes both trainings; the models, learners and
    optimizers are built under its scope. With several workers, every worker runs this
    same call; only the chief checks and writes ``workdir`` (each needs ``workdir``'s
    checkpoints to resume: a shared folder, or a copy). ``callbacks`` (Keras callbacks)
    see both trainings. ``verbose``: 0 prints nothing, 1 the split's counts and progress bars, 2
    the counts and what starts, without bars (the CLI's ``--quiet``).
    """
    if strategy is None:
        strategy = make_strategy(config.train.strategy)  # first: a multi-worker cluster is set up before any op
    chief = is_chief(strategy)
    folder = RunFolder(workdir) if workdir is not None else None
    decision = folder.prepare(config, mode) if folder is not None and chief else "fresh"
    if verbose and decision in ("continue", "overwrite"):
        print(f"{'Continuing the run' if decision == 'continue' else 'Replacing the run'} in {folder.path}")
    prepared = prepare(config, data, split)
    if folder is not None and chief:
        _check_saved_split(folder, prepared.split)
        folder.save_config(config)  # the folder names its run from the first step on
        prepared.save_split(folder.split_dir)
    if verbose:
        print(describe_split(prepared))
    distributed = is_distributed(strategy)
    check_batch(config.train.batch_size, strategy if distributed else None)
    verbose = verbose if chief else 0
    bars = 1 if verbose == 1 else 0
    with strategy.scope() if distributed else contextlib.nullcontext():
        learner = build_learner(config, build_model(config, prepared.encoded), prepared)
        baseline = build_baseline(config, prepared.encoded)
    history = {}
    if verbose:
        where = f" on {strategy.num_replicas_in_sync} replicas" if distributed else ""
        print(f"Meta-training {config.learner.name} for {config.train.meta_steps} steps{where}")
    history["learner"] = fit_learner(learner, prepared, config.train.meta_steps, folder, "learner", bars,
                                     checkpoint_every, strategy, callbacks)
    if verbose:
        print(_kept(history["learner"], config.train.select_metric), end="")
        print(f"Training the global baseline for {config.train.pretrain_steps} steps")
    history["baseline"] = fit_learner(baseline, prepared, config.train.pretrain_steps, folder, "baseline", bars,
                                      checkpoint_every, strategy, callbacks)
    if verbose:
        print(_kept(history["baseline"], config.train.select_metric), end="")
    run = Run(config, prepared, learner, baseline, history)
    if folder is not None and chief:
        save_run(run, folder.path)
    return run


def _kept(history: dict[str, list[float]], metric: str) -> str:
    """The line saying which step a training kept (empty when it kept the last)."""
    if not history.get("selected_step"):
        return ""
    stopped = (f"; stopped at step {int(history['stopped_step'][0])}, no better step since"
               if history.get("stopped_step") else "")
    return (f"Kept the weights of step {int(history['selected_step'][0])} "
            f"({SELECT_METRICS[metric]} validation {metric}, "
            f"{history['selected_validation_score'][0]:.4f}{stopped})\n")


def describe_split(prepared: Prepared) -> str:
    """What the run trains, validates and evaluates on, as printed before training."""
    config = prepared.config
    if config.train.finetune_lr is not None:
        chooser = f"the fine-tuning step size is train.finetune_lr = {config.train.finetune_lr:g}"
    else:
        chooser = "they choose the fine-tuning step size"
    text = (f"Dataset {config.dataset}: cold-start split (users, items, ratings; tasks evaluated)\n"
            f"{prepared.counts().to_string()}\n"
            f"meta-training uses {len(prepared.train_ratings)} ratings; {len(prepared.validation)} validation users "
            f"are held out ({chooser})")
    if len(prepared.held_items):
        text += (f"; {len(prepared.held_items)} items are held out as pseudo-new items "
                 f"({len(prepared.validation_items)} validation tasks rate them)")
    tc = config.train
    if tc.select_every and max(tc.meta_steps, tc.pretrain_steps) > tc.select_every:
        if prepared.validation_sets():
            text += (f"; every {tc.select_every} steps both trainings are scored on "
                     f"{' and '.join(prepared.validation_sets())} and the best step is kept")
        else:
            text += "; no validation task to score steps on, so each training keeps its last step"
    return text


def _check_saved_split(folder: RunFolder, split: ColdStartSplit) -> None:
    """A continued run keeps its split: refuse to continue one trained on other published rows."""
    if not folder.checkpoints_dir.exists():
        return
    saved = folder.split_dir / "published.csv.gz"
    before = pd.read_csv(saved, keep_default_na=False) if saved.exists() else None
    now = split.published
    if before is None and now is None:
        return
    same = before is not None and now is not None and len(before) == len(now) and all(
        np.allclose(before[c].to_numpy(dtype="float64"), now[c].to_numpy(dtype="float64")) if c == "rating"
        else np.array_equal(before[c].to_numpy(), now[c].to_numpy()) for c in now.columns)
    if not same:
        raise RunFolderError(f"{folder.path} was trained on another split ({saved} does not match the split given "
                             "now); pass --overwrite to replace the run.")


def save_run(run: Run, workdir: str | os.PathLike) -> None:
    """Write a run's config, encoder, split counts and both learners."""
    folder = RunFolder(workdir)
    folder.save_config(run.config)
    folder.save_encoder(run.prepared.encoder)
    run.prepared.save_split(folder.split_dir)
    folder.save_learners(run.learner, run.baseline)


def load_run(workdir: str | os.PathLike, data: InteractionData | None = None, data_dir: str | None = None) -> Run:
    """Reload a saved run (its data split is re-derived, deterministically, from the config;
    a published split is read from the run's own copy). ``data_dir`` reads the data from
    another folder than the one saved with the run."""
    folder = RunFolder(workdir)
    folder.require_trained()
    config = folder.load_config()
    if data_dir:
        config = _replace_data_dir(config, data_dir)
    split = None
    if (folder.split_dir / "published.csv.gz").exists():
        data = data if data is not None else load_data(config)
        split = load_split(folder.split_dir, data)
    prepared = prepare(config, data, split)
    learner = folder.load_learner()
    saved_with = learner.model.encoder_digest  # empty in runs saved before models kept it
    if saved_with and saved_with != prepared.encoder.digest():
        raise RunFolderError(
            f"{folder.path} was trained on data that encoded differently (vocabularies, transforms or rating "
            "range): the data it reads now is not the data it was trained on. Point --data-dir at that data, "
            "or train again.")
    return Run(config, prepared, learner, folder.load_learner(BASELINE))


def _replace_data_dir(config: ExperimentConfig, data_dir: str) -> ExperimentConfig:
    return dataclasses.replace(config, data_dir=data_dir)


__all__ = ["Run", "fit_learner", "load_run", "sampler_for", "save_run", "train"]
