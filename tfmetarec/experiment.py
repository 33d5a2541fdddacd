"""One experiment end to end: data -> split -> episodes -> training -> cold-start report.

The CLI, the notebooks and the tests all call these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.config import ExperimentConfig
from tfmetarec.data import (
    ColdStartSplit,
    EncodedData,
    FeatureEncoder,
    InteractionData,
    cold_start_split,
    load_dataset,
)
from tfmetarec.data.published import published_split, read_split
from tfmetarec.evaluation.curves import SUPPORT_SIZES, inner_steps_curve, plot_curve, support_size_curve
from tfmetarec.evaluation.protocol import evaluate_per_task, evaluate_scenarios, evaluate_tasks
from tfmetarec.evaluation.stats import compare, to_markdown_tests
from tfmetarec.evaluation.report import to_markdown, to_text, tidy
from tfmetarec.learners import MetaLearner, MetaTrainer, Pretrain
from tfmetarec.learners import get as get_learner
from tfmetarec.learners.distribute import check_batch, is_chief, is_distributed, make_strategy
from tfmetarec.models import MetaModel
from tfmetarec.models import get as get_model
from tfmetarec.run_folder import RunFolderError, prepare_run_folder
from tfmetarec.tasks.episode import TaskSet, build_fixed_tasks, build_tasks
from tfmetarec.tasks.samplers import EpisodeSampler

COLD_SCENARIOS = ("user_cold", "item_cold", "user_item_cold")


@dataclass
class Prepared:
    """The data side of an experiment: split, encoded features and evaluation tasks."""

    config: ExperimentConfig
    data: InteractionData
    split: ColdStartSplit
    encoder: FeatureEncoder
    encoded: EncodedData
    train_ratings: pd.DataFrame
    validation: TaskSet
    scenarios: dict[str, TaskSet]


@dataclass
class Run:
    """A trained experiment: the meta-learner, the global baseline and their data."""

    config: ExperimentConfig
    prepared: Prepared
    learner: MetaLearner
    baseline: Pretrain
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def load_data(config: ExperimentConfig) -> InteractionData:
    """The experiment's dataset (the synthetic one is seeded by the run seed)."""
    if config.dataset == "synthetic":
        return load_dataset("synthetic", seed=config.train.seed)
    return load_dataset(config.dataset, config.data_dir, item_side_file=config.item_side_file)


VALIDATION_FRACTION = 0.1

SplitSource = ColdStartSplit | pd.DataFrame | str | os.PathLike


def resolve_split(config: ExperimentConfig, data: InteractionData, split: SplitSource | None = None) -> ColdStartSplit:
    """The run's split: ``split`` when given (a :class:`ColdStartSplit`, a frame in the
    published layout, or a split file / MeLU folder), else ``config.split_file``, else one
    drawn by :func:`cold_start_split`."""
    if isinstance(split, ColdStartSplit):
        return split
    if isinstance(split, pd.DataFrame):
        return published_split(data, split, config.split)
    source = split if split is not None else config.split_file
    if source is not None:
        return published_split(data, read_split(source, config.split), config.split, source=os.fspath(source))
    return cold_start_split(data, config.split)


def _published_tasks(config: ExperimentConfig, encoded: EncodedData, split: ColdStartSplit, is_held: pd.Series,
                     common: dict) -> tuple[TaskSet, dict[str, TaskSet]]:
    """Validation and scenario tasks of a published split, keeping its support/query roles."""
    if config.task_key != "user":
        raise ValueError("A published split fixes each user's support and query; it needs task_key='user'.")
    fixed = {k: common[k] for k in ("min_support", "max_support", "seed")}
    held = split.meta_train[is_held]
    if (held["role"] != "").all():
        validation = build_fixed_tasks(encoded, held, name="validation", **fixed)
    else:  # meta-training rows without roles: draw validation queries as the MeLU protocol does
        validation = build_tasks(encoded, held.drop(columns="role"), name="validation", **common)
    scenarios = {"warm": build_fixed_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train,
                                           name="warm", **fixed)}
    for name in COLD_SCENARIOS:
        scenarios[name] = build_fixed_tasks(encoded, split.partitions[name], name=name, **fixed)
    return validation, scenarios


def prepare(config: ExperimentConfig, data: InteractionData | None = None,
            split: SplitSource | None = None) -> Prepared:
    """Split the data, fit the encoders on the meta-training side, build eval tasks
    (one per user, or one per item with ``config.task_key == "item"``).

    ``split`` (or ``config.split_file``) gives a published split instead of drawing one
    (see :func:`resolve_split`); its tasks keep their given support and query.
    A seeded tenth of the meta-training users is held out as *validation*
    tasks (used to choose the fine-tuning baseline's step size); the rest are
    the training ratings.
    """
    data = data if data is not None else load_data(config)
    split = resolve_split(config, data, split)
    sc = config.split
    users = np.unique(split.meta_train["user"].to_numpy())
    rng = np.random.default_rng(sc.seed + 7)
    held = rng.choice(users, max(1, int(round(VALIDATION_FRACTION * len(users)))), replace=False)
    is_held = split.meta_train["user"].isin(held)
    train_ratings = split.meta_train[~is_held]
    encoder = FeatureEncoder().fit(
        data, train_users=np.unique(train_ratings["user"]), train_items=split.existing_items
    )
    encoded = encoder.transform(data)
    common = dict(query_size=sc.query_size, min_support=sc.min_support, max_support=config.train.max_support,
                  seed=sc.seed, task_key=config.task_key)
    if split.published is not None:
        validation, scenarios = _published_tasks(config, encoded, split, is_held, common)
        return Prepared(config, data, split, encoder, encoded, train_ratings, validation, scenarios)
    validation = build_tasks(encoded, split.meta_train[is_held], name="validation", **common)
    scenarios = {
        "warm": build_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train, name="warm", **common)
    }
    for name in COLD_SCENARIOS:
        scenarios[name] = build_tasks(encoded, split.partitions[name], name=name, **common)
    return Prepared(config, data, split, encoder, encoded, train_ratings, validation, scenarios)


def build_model(config: ExperimentConfig, encoded: EncodedData) -> MetaModel:
    """A fresh rating model sized for the encoded features, holding the item table.

    The table starts with the training items; every other item of the data (the
    split's new items) enters by its content alone through ``model.add_items``,
    the way a service adds an item that arrives after training.
    """
    m = config.model
    spec = encoded.spec
    n = spec.num_items
    model = get_model(m.name).from_spec(
        spec, embedding_dim=m.embedding_dim, field_dims=dict(m.field_dims), list_pooling=m.list_pooling,
        hidden_units=m.hidden_units, use_ids=m.use_ids, seed=config.train.seed,
    )
    model.set_item_table(encoded.item_table[:n], encoded.item_raw_ids[:n])
    model.add_items(encoded.item_table[n:], encoded.item_raw_ids[n:])
    return model


def build_learner(config: ExperimentConfig, model: MetaModel, prepared: Prepared | None = None) -> MetaLearner:
    """The configured learner around ``model``; item-statistics baselines are
    fitted on ``prepared.train_ratings`` (required for them)."""
    lc = config.learner
    cls = get_learner(lc.name)
    name = lc.name.lower()
    gradient = dict(inner_steps=lc.inner_steps, inner_lr=lc.inner_lr, adapt=lc.adapt)
    options: dict = {
        "maml": dict(gradient, first_order=lc.first_order, learn_inner_lr=lc.learn_inner_lr,
                     multi_step_loss=lc.multi_step_loss, msl_anneal_steps=lc.msl_anneal_steps),
        "reptile": dict(gradient, train_on_query=lc.train_on_query),
        "prototype": dict(hidden_dim=lc.hidden_dim, shrinkage=lc.shrinkage, seed=config.train.seed),
        "task_encoder": dict(hidden_dim=lc.hidden_dim, pooling=lc.pooling, shrinkage=lc.shrinkage,
                             seed=config.train.seed),
        "pretrain": dict(finetune_lr=lc.inner_lr, adapt=lc.adapt),
        "popularity": {},
        "item_mean": dict(shrinkage=lc.item_shrinkage),
    }
    options["fomaml"] = dict(options["maml"], first_order=True)
    options["meta_sgd"] = dict(options["maml"], learn_inner_lr="per_parameter" if lc.learn_inner_lr == "fixed"
                               else lc.learn_inner_lr)
    options["matching"] = options["prototype"]
    learner = cls(model, **options.get(name, {}))
    learner.set_query_loss(lc.ranking_weight, lc.ranking_loss)
    if hasattr(learner, "fit_statistics"):
        if prepared is None:
            raise ValueError(f"The {lc.name!r} learner needs the training ratings: call build_learner(..., prepared).")
        ratings = prepared.train_ratings
        learner.fit_statistics(prepared.encoded.item_vocab_ids(ratings["item"]), ratings["rating"].to_numpy())
    return learner


def fit_learner(
    learner: MetaLearner,
    prepared: Prepared,
    steps: int,
    workdir: Path | None = None,
    tag: str = "learner",
    verbose: int = 0,
    checkpoint_every: int = 100,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
) -> dict[str, list[float]]:
    """Meta-train ``learner`` on the prepared training ratings for ``steps`` steps.

    With ``workdir``, a checkpoint (weights, optimizer, step and the episode stream's
    state) is written every ``checkpoint_every`` steps and the latest one is resumed.
    A learner with nothing to train (no meta-variables) returns at once. With a
    ``strategy`` (the learner built under its scope), each replica trains on its share
    of every global batch of ``config.train.batch_size`` tasks (see ``MetaTrainer``).
    """
    if not learner.meta_variables():
        return {}
    tc = prepared.config.train
    if tc.fixed_tasks and ("role" not in prepared.train_ratings or (prepared.train_ratings["role"] == "").any()):
        raise ValueError("train.fixed_tasks trains on a published split's given support/query tasks, but the "
                         "meta-training rows have no role; give a split file with roles or drop fixed_tasks.")
    check_batch(tc.batch_size, strategy if is_distributed(strategy) else None)
    sampler = EpisodeSampler(
        prepared.encoded,
        prepared.train_ratings,
        batch_size=tc.batch_size,
        query_size=prepared.config.split.query_size,
        max_support=tc.max_support,
        seed=tc.seed,
        task_key=prepared.config.task_key,
        fixed=tc.fixed_tasks,
    )
    scope = strategy.scope() if is_distributed(strategy) else contextlib.nullcontext()
    with scope:
        optimizer = keras.optimizers.Adam(tc.outer_lr)
    trainer = MetaTrainer(learner, optimizer, jit_compile=tc.jit_compile, steps_per_execution=tc.steps_per_execution,
                          strategy=strategy)
    return trainer.fit(
        sampler,
        steps,
        callbacks=callbacks,
        verbose=verbose,
        checkpoint_dir=None if workdir is None else workdir / "checkpoints" / tag,
        tensorboard_dir=None if workdir is None else workdir / "logs" / tag,
        checkpoint_every=checkpoint_every,
    )


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
    see both trainings.
    """
    if strategy is None:
        strategy = make_strategy(config.train.strategy)  # first: a multi-worker cluster is set up before any op
    chief = is_chief(strategy)
    out = Path(workdir) if workdir is not None else None
    decision = prepare_run_folder(out, config, mode) if out is not None and chief else "fresh"
    if verbose and decision in ("continue", "overwrite"):
        print(f"{'Continuing the run' if decision == 'continue' else 'Replacing the run'} in {out}")
    prepared = prepare(config, data, split)
    if out is not None and chief:
        _check_saved_split(out, prepared.split)
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")  # the folder names its run from the first step on
        prepared.split.save(out / "split")
    if verbose:
        print(f"Dataset {config.dataset}: cold-start split")
        print(prepared.split.counts().to_string())
        print(
            f"meta-training uses {len(prepared.train_ratings)} ratings; "
            f"{len(prepared.validation)} held-out validation users choose the fine-tuning step size"
        )
    distributed = is_distributed(strategy)
    check_batch(config.train.batch_size, strategy if distributed else None)
    verbose = verbose if chief else 0
    with strategy.scope() if distributed else contextlib.nullcontext():
        learner = build_learner(config, build_model(config, prepared.encoded), prepared)
        baseline = Pretrain(build_model(config, prepared.encoded), 0, config.learner.inner_lr, config.learner.adapt)
    history = {}
    if verbose:
        where = f" on {strategy.num_replicas_in_sync} replicas" if distributed else ""
        print(f"Meta-training {config.learner.name} for {config.train.meta_steps} steps{where}")
    history["learner"] = fit_learner(learner, prepared, config.train.meta_steps, out, "learner", verbose,
                                     checkpoint_every, strategy, callbacks)
    if verbose:
        print(f"Training the global baseline for {config.train.pretrain_steps} steps")
    history["baseline"] = fit_learner(baseline, prepared, config.train.pretrain_steps, out, "baseline", verbose,
                                      checkpoint_every, strategy, callbacks)
    run = Run(config, prepared, learner, baseline, history)
    if out is not None and chief:
        save_run(run, out)
    return run


def _check_saved_split(workdir: Path, split: ColdStartSplit) -> None:
    """A continued run keeps its split: refuse to continue one trained on other published rows."""
    if not (workdir / "checkpoints").exists():
        return
    saved = workdir / "split" / "published.csv.gz"
    before = pd.read_csv(saved, keep_default_na=False) if saved.exists() else None
    now = split.published
    if before is None and now is None:
        return
    same = before is not None and now is not None and len(before) == len(now) and all(
        np.allclose(before[c].to_numpy(dtype="float64"), now[c].to_numpy(dtype="float64")) if c == "rating"
        else np.array_equal(before[c].to_numpy(), now[c].to_numpy()) for c in now.columns)
    if not same:
        raise RunFolderError(f"{workdir} was trained on another split ({saved} does not match the split given "
                             "now); pass --overwrite to replace the run.")


def save_run(run: Run, workdir: str | os.PathLike) -> None:
    """Write a run's config, encoder, split counts and both learners."""
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    run.config.save(out / "config.json")
    (out / "encoder.json").write_text(json.dumps(run.prepared.encoder.to_dict()), encoding="utf-8")
    run.prepared.split.save(out / "split")
    run.learner.save(out / "learner.keras")
    run.baseline.save(out / "baseline.keras")


def load_run(workdir: str | os.PathLike, data: InteractionData | None = None) -> Run:
    """Reload a saved run (its data split is re-derived, deterministically, from the config)."""
    out = Path(workdir)
    if not (out / "learner.keras").exists():
        raise FileNotFoundError(f"{out} holds no trained run (no learner.keras); run `tfmetarec train` first.")
    config = ExperimentConfig.load(out / "config.json")
    saved_split = out / "split" / "published.csv.gz"
    split = None
    if saved_split.exists():  # a published split is read from the run's own copy
        data = data if data is not None else load_data(config)
        split = ColdStartSplit.load(out / "split", data)
    prepared = prepare(config, data, split)
    learner = keras.saving.load_model(out / "learner.keras")
    baseline = keras.saving.load_model(out / "baseline.keras")
    return Run(config, prepared, learner, baseline)


FINETUNE_LRS = (0.0, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
"""Fine-tuning step sizes tried on validation tasks; 0 (no adaptation) is one of them, so
fine-tuning is never worse than no adaptation on validation by construction."""


def tune_finetune_lr(baseline: Pretrain, prepared: Prepared, steps: int, grid=FINETUNE_LRS) -> float:
    """The fine-tuning step size with the lowest query MAE on the validation users.

    The baseline gets its own step size, chosen on held-out meta-training
    users and never on an evaluation scenario, so it is not judged with a rate
    tuned for the meta-learner.
    """
    scores = {
        lr: evaluate_tasks(
            baseline.with_finetuning(steps, lr),
            prepared.encoded,
            prepared.validation,
            batch_size=prepared.config.train.batch_size,
            jit_compile=False,
        )["MAE"]
        for lr in grid
    }
    return min(scores, key=scores.get)


def compared_learners(run: Run, finetune_lr: float | None = None) -> dict[str, MetaLearner]:
    """The meta-learner and the two baselines, by report name."""
    lc = run.config.learner
    lr = tune_finetune_lr(run.baseline, run.prepared, lc.inner_steps) if finetune_lr is None else finetune_lr
    compared = {
        lc.name: run.learner,
        "no-adaptation": run.baseline,
        "fine-tune": run.baseline.with_finetuning(lc.inner_steps, lr),
    }
    if lc.name == "pretrain":  # the learner *is* the no-adaptation baseline
        del compared[lc.name]
    return compared


def adaptation_curves(run: Run, workdir: str | os.PathLike, scenario: str = "user_cold") -> dict[str, pd.DataFrame]:
    """MAE and nDCG@3 against support size and inner steps on one scenario; PNG + CSV in ``workdir``."""
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    learners = compared_learners(run)
    tasks = run.prepared.scenarios[scenario]
    longest = int(tasks.support_sizes().max()) if len(tasks) else 0
    sizes = tuple(n for n in SUPPORT_SIZES if n <= longest) or (1,)
    by_support = support_size_curve(learners, run.prepared.encoded, tasks, sizes, seed=run.config.split.seed)
    gradient = {k: v for k, v in learners.items() if hasattr(v, "inner_steps") or getattr(v, "finetune_steps", 0)}
    by_steps = inner_steps_curve(gradient, run.prepared.encoded, tasks)
    for metric in ("MAE", "nDCG@3"):
        slug = metric.replace("@", "")
        plot_curve(by_support, "support", metric, out / f"curve_support_{slug}.png", f"{scenario}: {metric} vs support size")
        plot_curve(by_steps, "inner_steps", metric, out / f"curve_steps_{slug}.png", f"{scenario}: {metric} vs inner steps")
    return {"support": by_support, "inner_steps": by_steps}


def evaluate(
    run: Run, workdir: str | os.PathLike | None = None, ks=(1, 3, 5), binary: bool = False
) -> pd.DataFrame:
    """The cold-start report: the meta-learner against no adaptation and fine-tuning.

    With ``binary``, the report adds precision, recall, F1, AUC (a rating of 4
    or more is a like) and coverage@k.
    """
    lc = run.config.learner
    finetune_lr = tune_finetune_lr(run.baseline, run.prepared, lc.inner_steps)
    learners = compared_learners(run, finetune_lr)
    report = tidy(
        evaluate_scenarios(
            learners,
            run.prepared.encoded,
            run.prepared.scenarios,
            ks=ks,
            batch_size=run.config.train.batch_size,
            jit_compile=False,
            binary=binary,
        )
    )
    if workdir is not None:
        out = Path(workdir)
        out.mkdir(parents=True, exist_ok=True)
        tests = paired_comparisons(run, learners)
        report.attrs["paired_tests"] = tests
        report.to_csv(out / "report.csv", index=False)
        tests.to_csv(out / "report_tests.csv", index=False)
        (out / "finetune.json").write_text(json.dumps({"finetune_lr": finetune_lr, "steps": lc.inner_steps}))
        text = to_markdown(report) + "\n"
        if len(tests):
            text += ("\nPaired tests over tasks (difference = method - baseline; sign-flip permutation p; "
                     "better/worse only where p < 0.05):\n\n" + to_markdown_tests(tests) + "\n")
        (out / "report.md").write_text(text, encoding="utf-8")
    return report


def paired_comparisons(run: Run, learners: dict[str, MetaLearner] | None = None,
                       metrics: tuple[str, ...] = ("MAE", "nDCG@3")) -> pd.DataFrame:
    """The meta-learner against each other method on every scenario, paired over the same
    tasks: mean difference, 95 % interval, permutation p and a verdict that says better or
    worse only when significant (:func:`tfmetarec.evaluation.stats.compare`)."""
    learners = learners if learners is not None else compared_learners(run)
    main = run.config.learner.name if run.config.learner.name in learners else next(iter(learners))
    per_task = evaluate_per_task(learners, run.prepared.encoded, run.prepared.scenarios,
                                 batch_size=run.config.train.batch_size, jit_compile=False)
    if per_task.empty:
        return pd.DataFrame()
    frames = [compare(per_task, main, other, metrics, seed=run.config.train.seed) for other in learners if other != main]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = [
    "Prepared",
    "adaptation_curves",
    "compared_learners",
    "Run",
    "build_learner",
    "build_model",
    "evaluate",
    "fit_learner",
    "load_run",
    "paired_comparisons",
    "prepare",
    "resolve_split",
    "save_run",
    "streaming",
    "to_text",
    "train",
    "tune_finetune_lr",
]


def streaming(run: Run, workdir: str | os.PathLike | None = None, scenario: str = "user_cold",
              points: tuple[int, ...] | None = None) -> pd.DataFrame:
    """The streaming protocol (:mod:`tfmetarec.evaluation.streaming`) on one scenario: the
    learner updated rating by rating, re-adapted from scratch, the fine-tuned baseline and
    no adaptation, after each of ``points`` arrivals. With ``workdir``, writes
    ``streaming/`` there (CSV, Markdown, one PNG per metric)."""
    from tfmetarec.evaluation.streaming import POINTS, StreamMethod, stream_tasks, streaming_curve, write_streaming

    points = tuple(points or POINTS)
    config, prepared = run.config, run.prepared
    if scenario not in prepared.split.partitions:
        raise ValueError(f"Unknown scenario {scenario!r}; choose from {sorted(prepared.split.partitions)}.")
    tasks = stream_tasks(prepared.encoded, prepared.split.partitions[scenario], task_key=config.task_key,
                         query_size=config.split.query_size, reveal=max(points), seed=config.split.seed,
                         name=scenario)
    lc = config.learner
    lr = tune_finetune_lr(run.baseline, prepared, lc.inner_steps)
    methods = {
        "incremental": StreamMethod(run.learner, "incremental"),
        "re-adapt": StreamMethod(run.learner, "readapt"),
        "fine-tune": StreamMethod(run.baseline.with_finetuning(lc.inner_steps, lr), "readapt"),
        "no adaptation": StreamMethod(run.baseline, "readapt"),
    }
    curve = streaming_curve(methods, prepared.encoded, tasks, points, batch_size=config.train.batch_size)
    if workdir is not None:
        write_streaming(curve, Path(workdir) / "streaming", f"{scenario}, {lc.name}: ")
    return curve
