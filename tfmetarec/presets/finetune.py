"""Fine-tune a preset on other data: build a learner for the data with the preset's settings,
transfer what transfers (:mod:`tfmetarec.presets.transfer`), and meta-train it as a run."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd

from tfmetarec.config import ExperimentConfig
from tfmetarec.data import InteractionData
from tfmetarec.evaluation.protocol import evaluate_scenarios
from tfmetarec.evaluation.report import tidy
from tfmetarec.presets.store import Preset, from_preset
from tfmetarec.presets.transfer import TransferReport, transfer
from tfmetarec.run_folder import RunFolder
from tfmetarec.workflows.build import build_baseline, build_learner, build_model
from tfmetarec.workflows.prepare import prepare
from tfmetarec.workflows.train import Run, fit_learner, save_run


def finetune(
    preset: Preset | str | os.PathLike,
    config: ExperimentConfig,
    workdir: str | os.PathLike | None = None,
    data: InteractionData | None = None,
    verbose: int = 0,
) -> tuple[Run, TransferReport]:
    """Continue meta-training ``preset`` on the data of ``config``.

    ``config`` chooses the data (dataset, data_dir, split) and the training budget
    (``config.train``); the model and learner settings come from the preset. Returns
    the fine-tuned run (learner plus a global baseline trained on the same data) and
    the transfer report. With ``workdir``, the run is saved there like a trained one
    (and ``transfer.txt`` says what transferred).
    """
    if not isinstance(preset, Preset):
        preset = from_preset(preset)
    config = replace(config, model=preset.config.model, learner=preset.config.learner)
    folder = RunFolder(workdir) if workdir is not None else None
    if folder is not None:
        folder.prepare(config)  # refuses a folder holding another run
    prepared = prepare(config, data)
    learner = build_learner(config, build_model(config, prepared.encoded), prepared)
    report = transfer(preset.learner, preset.encoder, learner, prepared.encoder)
    if not report.copied and not report.matched_rows:
        raise ValueError(f"Nothing of the preset transfers to a {config.model.name} + {config.learner.name} learner "
                         "on this data (every weight would be re-initialised); check the preset's config.")
    if verbose:
        print(report.to_text())
    if folder is not None:
        folder.save_config(config)
    history = {"learner": fit_learner(learner, prepared, config.train.meta_steps, folder, "learner", verbose)}
    baseline = build_baseline(config, prepared.encoded)
    history["baseline"] = fit_learner(baseline, prepared, config.train.pretrain_steps, folder, "baseline", verbose)
    run = Run(config, prepared, learner, baseline, history)
    if folder is not None:
        save_run(run, folder.path)
        folder.transfer_file.write_text(report.to_text() + "\n", encoding="utf-8")
    return run, report


def finetune_config(preset: Preset, dataset: str, data_dir: str | None = None, seed: int = 0,
                    meta_steps: int | None = None, pretrain_steps: int | None = None) -> ExperimentConfig:
    """The preset's config moved to other data: ``dataset`` (read from ``data_dir``), a split
    drawn with ``seed`` (and the dataset's own new-item year), and the training budget."""
    base = preset.config
    train = replace(base.train, seed=seed, **{k: v for k, v in (("meta_steps", meta_steps),
                                                                ("pretrain_steps", pretrain_steps)) if v is not None})
    return replace(base, dataset=dataset, data_dir=data_dir, item_side_file=None, split_file=None,
                   split=replace(base.split, seed=seed, new_item_year=None), train=train)


def preset_metrics(preset: Preset, data: InteractionData | None = None) -> pd.DataFrame:
    """Re-evaluate a preset's learner on its own split (what its model card reports)."""
    prepared = prepare(preset.config, data)
    return tidy(evaluate_scenarios({preset.config.learner.name: preset.learner}, prepared.encoded,
                                   prepared.scenarios, batch_size=preset.config.train.batch_size, jit_compile=False,
                                   item_warmup=preset.config.train.item_warmup))


__all__ = ["finetune", "finetune_config", "preset_metrics"]
