"""Workflows: what a user runs, each a small module over one :class:`~tfmetarec.run_folder.RunFolder`.

* :mod:`~tfmetarec.workflows.prepare`: data -> split -> encoder -> evaluation tasks;
* :mod:`~tfmetarec.workflows.build`: a config -> model, learner and baseline;
* :mod:`~tfmetarec.workflows.train`: meta-train a run and save it;
* :mod:`~tfmetarec.workflows.evaluate`: the cold-start report, paired tests, curves, streaming;
* :mod:`~tfmetarec.workflows.serve`: export a run, recommend through its export;
* :mod:`~tfmetarec.workflows.zoo`: every learner x model on the same splits.

Fine-tuning a published preset is :func:`tfmetarec.presets.finetune` (it builds on these).
The command line calls one function here per subcommand; nothing below this layer imports it.
"""

from __future__ import annotations

from tfmetarec.workflows.build import build_baseline, build_learner, build_model
from tfmetarec.workflows.evaluate import adaptation_curves, evaluate, evaluate_folder, paired_comparisons, streaming
from tfmetarec.workflows.prepare import Prepared, prepare
from tfmetarec.workflows.serve import export_run, recommend
from tfmetarec.workflows.train import Run, fit_learner, load_run, save_run, train

__all__ = [
    "Prepared",
    "Run",
    "adaptation_curves",
    "build_baseline",
    "build_learner",
    "build_model",
    "evaluate",
    "evaluate_folder",
    "export_run",
    "fit_learner",
    "load_run",
    "paired_comparisons",
    "prepare",
    "recommend",
    "save_run",
    "streaming",
    "train",
]
