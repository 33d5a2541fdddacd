"""The zoo benchmark: every learner x model pair on the same data, splits and protocol.

``run_zoo`` prepares each (dataset, seed) once, then for each pair builds the
model and learner, meta-trains with the same budget, and scores the four
cold-start scenarios. Pairs that make no sense (a learner that needs a hook
the model lacks) are listed with the reason rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tfmetarec import registry
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, SplitConfig, TrainConfig
from tfmetarec.evaluation.protocol import evaluate_scenarios
from tfmetarec.evaluation.report import aggregate_seeds, tidy
from tfmetarec.evaluation.retrieval import catalogue_retrieval
from tfmetarec.learners import Pretrain
from tfmetarec.workflows.build import build_learner, build_model
from tfmetarec.workflows.evaluate import tune_finetune_lr
from tfmetarec.workflows.prepare import prepare
from tfmetarec.workflows.train import fit_learner

# Learners compared on the MeLU-style model, and the ones run on every other model.
ALL_LEARNERS = (
    "maml", "fomaml", "meta_sgd", "mamo", "reptile", "prototype", "matching", "task_encoder", "pretrain", "popularity",
    "item_mean",
)
CROSS_MODEL_LEARNERS = ("maml", "task_encoder", "pretrain")


@dataclass(frozen=True)
class ZooSettings:
    """What the zoo runs and with which budget."""

    datasets: tuple[str, ...] = ("synthetic", "movielens-100k")
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = ("melu",)
    learners: tuple[str, ...] = ALL_LEARNERS
    cross_model_learners: tuple[str, ...] = CROSS_MODEL_LEARNERS
    data_dir: str | None = None
    model_options: tuple[tuple[str, object], ...] = (("embedding_dim", 16), ("hidden_units", (64, 32)))
    """Options given to every model that takes them (the content-free ``cf`` has no hidden layers)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(meta_steps=800, pretrain_steps=800))
    inner_steps: int = 3
    # Catalogue-wide Recall@k / nDCG@k / coverage@k, on this scenario's tasks.
    retrieval_ks: tuple[int, ...] = (20,)
    retrieval_scenario: str = "user_cold"


def pairs(settings: ZooSettings) -> list[tuple[str, str]]:
    """(model, learner) pairs: every learner on the first model, the cross-model set on the rest."""
    out = [(settings.models[0], name) for name in settings.learners]
    for model in settings.models[1:]:
        out += [(model, name) for name in settings.cross_model_learners]
    return out


def _adapt_group(model) -> str:
    groups = model.param_groups()
    for name in ("decision", "user"):
        if name in groups:
            return name
    return "all"


def run_group(settings: ZooSettings, dataset: str, seed: int, verbose: bool = True) -> pd.DataFrame:
    """Every pair on one (dataset, seed): one row per (model, method, scenario), or a skip reason."""
    rows: list[pd.DataFrame] = []
    base = ExperimentConfig(
        dataset=dataset,
        data_dir=settings.data_dir,
        split=dataclasses.replace(SplitConfig(), seed=seed),
        train=dataclasses.replace(settings.train, seed=seed),
    )
    prepared = prepare(base)
    for model_name, learner_name in pairs(settings):
        started = time.time()
        accepted = registry.options("model", model_name)
        options = {k: v for k, v in settings.model_options if k in accepted}
        config = dataclasses.replace(base, model=ModelConfig(model_name, options))
        model = build_model(config, prepared.encoded)
        tag = dict(dataset=dataset, seed=seed, model=model_name)
        try:
            learner_options = {"inner_steps": settings.inner_steps, "adapt": _adapt_group(model)}
            taken = registry.options("learner", learner_name)
            lc = LearnerConfig(learner_name, {k: v for k, v in learner_options.items() if k in taken})
            config = dataclasses.replace(config, learner=lc)
            learner = build_learner(config, model, prepared)
        except (ValueError, TypeError, NotImplementedError) as err:
            rows.append(pd.DataFrame([{**tag, "method": learner_name, "skipped": str(err)}]))
            continue
        steps = config.train.pretrain_steps if learner_name == "pretrain" else config.train.meta_steps
        fit_learner(learner, prepared, steps)
        compared = {learner_name: learner}
        if isinstance(learner, Pretrain):
            lr = tune_finetune_lr(learner, prepared, settings.inner_steps)
            compared = {"no-adaptation": learner, "fine-tune": learner.with_finetuning(settings.inner_steps, lr)}
        report = evaluate_scenarios(
            compared, prepared.encoded, prepared.scenarios, batch_size=config.train.batch_size,
            jit_compile=False, binary=True, item_warmup=config.train.item_warmup,
        )
        tasks = prepared.scenarios.get(settings.retrieval_scenario)
        if settings.retrieval_ks and tasks is not None and len(tasks):
            for method, scored in compared.items():
                found = catalogue_retrieval(scored, prepared.encoded, tasks, settings.retrieval_ks,
                                            batch_size=config.train.batch_size)
                where = (report.method == method) & (report.scenario == settings.retrieval_scenario)
                for key, value in found.items():
                    report.loc[where, key] = value
        rows.append(report.assign(**tag, seconds=time.time() - started))
        if verbose:
            cold = report[report.scenario == "user_cold"]
            maes = ", ".join(f"{m}={v:.4f}" for m, v in zip(cold.method, cold.MAE))
            print(f"[{dataset} seed {seed}] {model_name} + {learner_name}: user-cold MAE {maes} "
                  f"({time.time() - started:.0f} s)", flush=True)
    return pd.concat(rows, ignore_index=True)


def run_zoo(
    settings: ZooSettings, out_dir: str | os.PathLike | None = None, verbose: bool = True, isolate: bool = False
) -> pd.DataFrame:
    """Per-seed results of every pair: one row per (dataset, seed, model, method, scenario).

    Skipped pairs appear as rows with ``skipped`` set to the reason. With
    ``isolate``, each (dataset, seed) runs in a fresh process: dozens of
    XLA-compiled training loops in one process exhaust the JIT's memory maps.
    """
    groups = [(d, s) for d in settings.datasets for s in settings.seeds]
    if isolate:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        frames = []
        for dataset, seed in groups:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                frames.append(pool.submit(run_group, settings, dataset, seed, verbose).result())
    else:
        frames = [run_group(settings, d, s, verbose) for d, s in groups]
    results = pd.concat(frames, ignore_index=True)
    if out_dir is not None:
        write_tables(results, out_dir)
    return results


def write_tables(results: pd.DataFrame, out_dir: str | os.PathLike) -> None:
    """``zoo_runs.csv`` (every seed), ``zoo_table.csv`` (mean, sd) and ``zoo_table.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "zoo_runs.csv", index=False)
    summary = summarise(results)
    summary.to_csv(out / "zoo_table.csv", index=False)
    (out / "zoo_table.md").write_text(to_markdown_table(summary, results), encoding="utf-8")


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for each (dataset, model, method, scenario)."""
    done = results[results.get("skipped", pd.Series(index=results.index, dtype=object)).isna()]
    out = []
    for (dataset, model), group in done.groupby(["dataset", "model"], sort=False):
        per_seed = [tidy(g.drop(columns=["dataset", "model", "seed", "seconds", "skipped"], errors="ignore"))
                    for _, g in group.groupby("seed")]
        out.append(aggregate_seeds(per_seed).assign(dataset=dataset, model=model))
    table = pd.concat(out, ignore_index=True)
    first = ["dataset", "model", "method", "scenario"]
    return table[first + [c for c in table.columns if c not in first]]


SCENARIO_ORDER = ("warm", "user_cold", "item_cold", "user_item_cold")


def to_markdown_table(summary: pd.DataFrame, results: pd.DataFrame | None = None,
                      metrics: Sequence[str] = ("MAE", "nDCG@3")) -> str:
    """One Markdown table per dataset and metric: rows = model + method, columns = scenarios
    (mean ± 95 % CI over seeds)."""
    lines: list[str] = []
    for dataset, data in summary.groupby("dataset", sort=False):
        for metric in metrics:
            lines += [f"### {dataset}: {metric} (mean ± 95 % CI over {int(data['seeds'].max())} seeds)", ""]
            header = ["model", "method", *SCENARIO_ORDER]
            lines += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(SCENARIO_ORDER)]
            for (model, method), g in data.groupby(["model", "method"], sort=False):
                cells = [model, method]
                for scenario in SCENARIO_ORDER:
                    row = g[g.scenario == scenario]
                    cells.append("—" if row.empty else f"{row[metric].iloc[0]:.4f} ± {row[metric + '_ci'].iloc[0]:.4f}")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    recall = sorted(c for c in summary.columns if c.startswith("Recall@") and not c.endswith(("_std", "_ci")))
    for dataset, data in summary.groupby("dataset", sort=False):
        for column in recall:
            k = column.split("@")[1]
            rows = data[data[column].notna()]
            if rows.empty:
                continue
            scenario = rows.scenario.iloc[0]
            lines += [f"### {dataset}: ranking the whole catalogue, {scenario} (mean ± 95 % CI over "
                      f"{int(rows['seeds'].max())} seeds)", ""]
            names = (column, f"cat_nDCG@{k}", f"cat_coverage@{k}")
            lines += ["| model | method | " + " | ".join(n.replace("cat_", "") for n in names) + " |",
                      "|---|---|" + "---:|" * len(names)]
            for _, r in rows.iterrows():
                cells = [f"{r[n]:.4f} ± {r[n + '_ci']:.4f}" for n in names]
                lines.append(f"| {r['model']} | {r['method']} | " + " | ".join(cells) + " |")
            lines.append("")
    if results is not None and "skipped" in results.columns:
        skipped = results[results["skipped"].notna()].drop_duplicates(["model", "method"])
        if len(skipped):
            lines += ["Pairs that do not apply:", ""]
            lines += [f"- {r.model} + {r.method}: {r.skipped}" for r in skipped.itertuples()]
            lines.append("")
    return "\n".join(lines)
