"""One experiment end to end, as the README shows it: ``experiment.train(config, workdir)`` then
``experiment.evaluate(run, workdir)``.

The functions live in :mod:`tfmetarec.workflows` (one small module each: prepare, build,
train, evaluate, serve, zoo); this module gathers them under the name the notebooks and
the README use.
"""

from __future__ import annotations

from tfmetarec.evaluation.report import to_text
from tfmetarec.learners import Pretrain
from tfmetarec.workflows.build import build_baseline, build_learner, build_model, finetune_steps
from tfmetarec.workflows.evaluate import (
    FINETUNE_LRS,
    adaptation_curves,
    compared_learners,
    evaluate,
    paired_comparisons,
    streaming,
    tune_finetune_lr,
)
from tfmetarec.workflows.prepare import COLD_SCENARIOS, Prepared, load_data, prepare, resolve_split
from tfmetarec.workflows.train import Run, fit_learner, load_run, save_run, train

__all__ = [
    "COLD_SCENARIOS",
    "FINETUNE_LRS",
    "Prepared",
    "Pretrain",
    "Run",
    "adaptation_curves",
    "build_baseline",
    "build_learner",
    "build_model",
    "compared_learners",
    "evaluate",
    "finetune_steps",
    "fit_learner",
    "load_data",
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
