"""Evaluate a run: the meta-learner against no adaptation and fine-tuning on every scenario,
paired tests, adaptation curves and the streaming protocol."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import tensorflow as tf

from tfmetarec.evaluation.curves import INNER_STEPS, SUPPORT_SIZES, adaptation_curve, plot_curve
from tfmetarec.evaluation.protocol import evaluate_tasks, per_task_table, predict_scenarios, scenario_table
from tfmetarec.evaluation.report import to_markdown, tidy
from tfmetarec.evaluation.stats import compare, to_markdown_tests
from tfmetarec.learners import MetaLearner, Pretrain
from tfmetarec.models.functional import graph_function
from tfmetarec.run_folder import RunFolder
from tfmetarec.types import QUERY, SUPPORT, features_of
from tfmetarec.workflows.build import finetune_steps
from tfmetarec.workflows.prepare import Prepared
from tfmetarec.workflows.train import Run, load_run

FINETUNE_LRS = (0.0, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
"""Fine-tuning step sizes tried on validation tasks; 0 (no adaptation) is one of them, so
fine-tuning is never worse than no adaptation on validation by construction."""
PAIRED_METRICS = ("MAE", "nDCG@3")


def tune_finetune_lr(baseline: Pretrain, prepared: Prepared, steps: int, grid: Sequence[float] = FINETUNE_LRS) -> float:
    """The fine-tuning step size with the lowest query MAE on the validation users.

    The baseline gets its own step size, chosen on held-out meta-training
    users and never on an evaluation scenario, so it is not judged with a rate
    tuned for the meta-learner.
    """
    probe = baseline.with_finetuning(steps, 0.0)

    @graph_function
    def finetuned(episode: dict, lr: tf.Tensor) -> tf.Tensor:  # one trace for every step size
        return probe.score(probe.sgd(episode[SUPPORT], rate=lr), features_of(episode[QUERY]))

    scores = {
        lr: evaluate_tasks(probe, prepared.encoded, prepared.validation, batch_size=prepared.config.train.batch_size,
                           fn=lambda episode, lr=lr: finetuned(episode, tf.constant(lr, tf.float32)))["MAE"]
        for lr in grid
    }
    return min(scores, key=scores.get)


def finetune_lr(run: Run) -> float:
    """The run's fine-tuning step size: ``train.finetune_lr`` when set, else chosen on its
    validation users the first time (:func:`tune_finetune_lr`), then kept on the run."""
    if run.config.train.finetune_lr is not None:
        return float(run.config.train.finetune_lr)
    if run.finetune_lr is None:
        run.finetune_lr = tune_finetune_lr(run.baseline, run.prepared, finetune_steps(run.config))
    return run.finetune_lr


def compared_learners(run: Run, lr: float | None = None) -> dict[str, MetaLearner]:
    """The meta-learner and the two baselines, by report name (fine-tuning with ``lr``, by default
    the run's :func:`finetune_lr`)."""
    steps = finetune_steps(run.config)
    lr = finetune_lr(run) if lr is None else lr
    compared = {
        run.config.learner.name: run.learner,
        "no-adaptation": run.baseline,
        "fine-tune": run.baseline.with_finetuning(steps, lr),
    }
    if run.config.learner.name == "pretrain":  # the learner *is* the no-adaptation baseline
        del compared["pretrain"]
    return compared


def evaluate(run: Run, workdir: str | os.PathLike | None = None, ks: Sequence[int] = (1, 3, 5),
             binary: bool = False) -> pd.DataFrame:
    """The cold-start report: the meta-learner against no adaptation and fine-tuning.

    With ``binary``, the report adds precision, recall, F1, AUC (a rating of 4 or more
    is a like) and coverage@k. With ``workdir``, it also writes ``report.md`` (with the
    paired tests), ``report.csv``, ``report_tests.csv`` and ``finetune.json`` there and
    attaches the paired tests as ``report.attrs["paired_tests"]``.
    """
    steps = finetune_steps(run.config)
    lr = finetune_lr(run)
    learners = compared_learners(run, lr)
    predictions = predict_scenarios(learners, run.prepared.encoded, run.prepared.scenarios,
                                    batch_size=run.config.train.batch_size, jit_compile=False,
                                    item_warmup=run.config.train.item_warmup)
    report = tidy(scenario_table(predictions, ks, binary))
    if workdir is not None:
        files = RunFolder(workdir).report_files
        files["md"].parent.mkdir(parents=True, exist_ok=True)
        tests = _paired(run, per_task_table(predictions, run.prepared.scenarios, ks), learners)
        report.attrs["paired_tests"] = tests
        report.to_csv(files["csv"], index=False)
        tests.to_csv(files["tests"], index=False)
        files["finetune"].write_text(json.dumps({"finetune_lr": lr, "steps": steps}))
        text = to_markdown(report) + "\n"
        if len(tests):
            text += ("\nPaired tests over tasks (difference = method - baseline; sign-flip permutation p; "
                     "better/worse only where p < 0.05):\n\n" + to_markdown_tests(tests) + "\n")
        files["md"].write_text(text, encoding="utf-8")
    return report


def _paired(run: Run, per_task: pd.DataFrame, learners: dict[str, MetaLearner],
            metrics: Sequence[str] = PAIRED_METRICS) -> pd.DataFrame:
    if per_task.empty:
        return pd.DataFrame()
    main = run.config.learner.name if run.config.learner.name in learners else next(iter(learners))
    frames = [compare(per_task, main, other, metrics, seed=run.config.train.seed) for other in learners if other != main]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paired_comparisons(run: Run, learners: dict[str, MetaLearner] | None = None,
                       metrics: Sequence[str] = PAIRED_METRICS) -> pd.DataFrame:
    """The meta-learner against each other method on every scenario, paired over the same
    tasks: mean difference, 95 % interval, permutation p and a verdict that says better or
    worse only when significant (:func:`tfmetarec.evaluation.stats.compare`)."""
    learners = learners if learners is not None else compared_learners(run)
    predictions = predict_scenarios(learners, run.prepared.encoded, run.prepared.scenarios,
                                    batch_size=run.config.train.batch_size, jit_compile=False,
                                    item_warmup=run.config.train.item_warmup)
    return _paired(run, per_task_table(predictions, run.prepared.scenarios), learners, metrics)


def adaptation_curves(run: Run, workdir: str | os.PathLike, scenario: str = "user_cold",
                      support_sizes: Sequence[int] = SUPPORT_SIZES,
                      inner_steps: Sequence[int] = INNER_STEPS) -> dict[str, pd.DataFrame]:
    """MAE and nDCG@3 against support size and inner steps on one scenario; PNG + CSV in ``workdir``."""
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    learners = compared_learners(run)
    tasks = run.prepared.scenarios[scenario]
    longest = int(tasks.support_sizes().max()) if len(tasks) else 0
    sizes = tuple(n for n in support_sizes if n <= longest) or (1,)
    by_support = adaptation_curve(learners, run.prepared.encoded, tasks, "support", sizes, seed=run.config.split.seed)
    gradient = {k: v for k, v in learners.items() if v.adaptation_steps is not None}
    by_steps = adaptation_curve(gradient, run.prepared.encoded, tasks, "inner_steps", inner_steps)
    for metric in ("MAE", "nDCG@3"):
        slug = metric.replace("@", "")
        plot_curve(by_support, "support", metric, out / f"curve_support_{slug}.png", f"{scenario}: {metric} vs support size")
        plot_curve(by_steps, "inner_steps", metric, out / f"curve_steps_{slug}.png", f"{scenario}: {metric} vs inner steps")
    return {"support": by_support, "inner_steps": by_steps}


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
    steps, lr = finetune_steps(config), finetune_lr(run)
    methods = {
        "incremental": StreamMethod(run.learner, "incremental"),
        "re-adapt": StreamMethod(run.learner, "readapt"),
        "fine-tune": StreamMethod(run.baseline.with_finetuning(steps, lr), "readapt"),
        "no adaptation": StreamMethod(run.baseline, "readapt"),
    }
    curve = streaming_curve(methods, prepared.encoded, tasks, points, batch_size=config.train.batch_size)
    if workdir is not None:
        write_streaming(curve, RunFolder(workdir).streaming_dir, f"{scenario}, {config.learner.name}: ")
    return curve


@dataclass
class Evaluation:
    """What ``tfmetarec evaluate`` produced for a run folder."""

    run: Run
    report: pd.DataFrame
    tests: pd.DataFrame
    curves: dict[str, pd.DataFrame] | None = None
    streaming: pd.DataFrame | None = None


def evaluate_folder(workdir: str | os.PathLike, data_dir: str | None = None, *, binary: bool = False,
                    curves: bool = False, streaming_protocol: bool = False, run: Run | None = None) -> Evaluation:
    """Everything ``tfmetarec evaluate`` does for a run folder: the report (and its files), and
    on request the adaptation curves and the streaming protocol, written into the folder. The fine-tuning
    step size an earlier evaluation chose (finetune.json) is reused."""
    folder = RunFolder(workdir)
    run = run if run is not None else load_run(folder.path, data_dir=data_dir)
    saved = folder.report_files["finetune"]
    if run.finetune_lr is None and saved.is_file():  # chosen by an earlier evaluation of this run
        try:
            chosen = json.loads(saved.read_text(encoding="utf-8"))
            if int(chosen["steps"]) == finetune_steps(run.config) and float(chosen["finetune_lr"]) in FINETUNE_LRS:
                run.finetune_lr = float(chosen["finetune_lr"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: tune again
    report = evaluate(run, folder.path, binary=binary)
    result = Evaluation(run, report, report.attrs.get("paired_tests", pd.DataFrame()))
    if curves:
        result.curves = adaptation_curves(run, folder.curves_dir)
    if streaming_protocol:
        result.streaming = streaming(run, folder.path)
    return result


__all__ = ["FINETUNE_LRS", "Evaluation", "adaptation_curves", "compared_learners", "evaluate", "evaluate_folder",
           "finetune_lr", "paired_comparisons", "streaming", "tune_finetune_lr"]
