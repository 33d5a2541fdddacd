"""Fine-tune a preset on other data: transfer what transfers, re-initialise the rest.

The user's data usually has other users, items and feature vocabularies than the
preset's. A fresh learner is built for the new data with the preset's model and
learner settings; then every variable is filled from the preset where it can be:

* embedding tables whose rows stand for vocabulary values (one table per user and
  item field, and the ID tables) are matched **row by value**: the row of occupation
  "engineer" or genre "Drama" is copied to wherever that value sits in the new
  vocabulary; the out-of-vocabulary row 0 is copied too; rows of values the preset
  never saw keep their fresh initialisation;
* every other variable of the same name and shape (decision layers, learned inner
  learning rates, metric projections, the task encoder) is copied whole;
* variables whose shapes differ are re-initialised and reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec import experiment
from tfmetarec.config import ExperimentConfig
from tfmetarec.data import FeatureEncoder, InteractionData
from tfmetarec.learners import MetaLearner
from tfmetarec.presets.store import Preset, from_preset
from tfmetarec.run_folder import prepare_run_folder


DATA_STATISTICS = ("item_count", "item_sum", "global_mean")


@dataclass
class TransferReport:
    """What fine-tuning took from the preset."""

    copied: list[str] = field(default_factory=list)
    matched_rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (matched, total)
    reinitialised: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [f"copied whole: {', '.join(self.copied) or 'nothing'}"]
        for table, (hit, total) in self.matched_rows.items():
            lines.append(f"{table}: {hit} of {total} rows matched by value, {total - hit} re-initialised")
        lines.append(f"re-initialised: {', '.join(self.reinitialised) or 'nothing'}")
        return "\n".join(lines)


PREFIXES = ("", "cf_", "cb_")  # the hybrid holds a CF ("cf_") and a content ("cb_") copy of each table
USER_ID_TABLES = ("user_id_embedding", "user_id_factors", "user_id_bias")
ITEM_ID_TABLES = ("item_id_embedding", "item_id_factors", "item_id_bias", "item_id_residual")


def row_labels(encoder: FeatureEncoder) -> dict[str, list]:
    """For each vocabulary-indexed table a model may hold (one per field, the ID tables),
    the value each row stands for."""
    out: dict[str, list] = {}
    for prefix in PREFIXES:
        for side in ("user", "item"):
            for f in encoder.fields_of(side):
                out[f"{prefix}{side}_{f.name}_embedding"] = [(side, f.name, v) for v in encoder.labels(side, f.name)]
        for name in USER_ID_TABLES:
            out[prefix + name] = ["<oov>", *encoder.user_vocab]
        for name in ITEM_ID_TABLES:
            out[prefix + name] = ["<oov>", *encoder.item_vocab]
    return out


def _keyed(learner: MetaLearner) -> dict[tuple[str, str], object]:
    model_vars = {id(v) for v in learner.model.variables}
    return {("model" if id(v) in model_vars else "learner", v.name): v for v in learner.variables}


def transfer(source: MetaLearner, source_encoder: FeatureEncoder, target: MetaLearner,
             target_encoder: FeatureEncoder) -> TransferReport:
    """Copy ``source``'s variables into ``target`` as described in the module docstring."""
    report = TransferReport()
    old, new = _keyed(source), _keyed(target)
    old_rows, new_rows = row_labels(source_encoder), row_labels(target_encoder)
    for key, variable in new.items():
        kind, name = key
        if name in DATA_STATISTICS:  # refitted on the new data by build_learner
            continue
        if key not in old:
            report.reinitialised.append(name)
            continue
        value = np.asarray(old[key].numpy())
        if kind == "model" and name in new_rows and len(new_rows[name]) == variable.shape[0]:
            index = {label: i for i, label in enumerate(old_rows[name])}
            fresh = np.asarray(variable.numpy()).copy()
            hits = 0
            for row, label in enumerate(new_rows[name]):
                if label in index and value.shape[1:] == fresh.shape[1:]:
                    fresh[row] = value[index[label]]
                    hits += 1
            variable.assign(fresh)
            report.matched_rows[name] = (hits, len(new_rows[name]))
        elif tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            report.copied.append(name)
        else:
            report.reinitialised.append(name)
    return report


def finetune(
    preset: Preset | str | os.PathLike,
    config: ExperimentConfig,
    workdir: str | os.PathLike | None = None,
    data: InteractionData | None = None,
    verbose: int = 0,
) -> tuple[experiment.Run, TransferReport]:
    """Continue meta-training ``preset`` on the data of ``config``.

    ``config`` chooses the data (dataset, data_dir, split) and the training budget
    (``config.train``); the model and learner settings come from the preset. Returns
    the fine-tuned run (learner plus a global baseline trained on the same data) and
    the transfer report.
    """
    if not isinstance(preset, Preset):
        preset = from_preset(preset)
    config = replace(config, model=preset.config.model, learner=preset.config.learner)
    out = Path(workdir) if workdir is not None else None
    if out is not None:
        prepare_run_folder(out, config)  # refuses a folder holding another run
    prepared = experiment.prepare(config, data)
    model = experiment.build_model(config, prepared.encoded)
    learner = experiment.build_learner(config, model, prepared)
    report = transfer(preset.learner, preset.encoder, learner, prepared.encoder)
    if not report.copied and not report.matched_rows:
        raise ValueError(f"Nothing of the preset transfers to a {config.model.name} + {config.learner.name} learner "
                         "on this data (every weight would be re-initialised); check the preset's config.")
    if verbose:
        print(report.to_text())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    history = {"learner": experiment.fit_learner(learner, prepared, config.train.meta_steps, out, "learner", verbose)}
    baseline = experiment.Pretrain(experiment.build_model(config, prepared.encoded), 0,
                                   config.learner.inner_lr, config.learner.adapt)
    history["baseline"] = experiment.fit_learner(baseline, prepared, config.train.pretrain_steps, out, "baseline",
                                                 verbose)
    run = experiment.Run(config, prepared, learner, baseline, history)
    if out is not None:
        experiment.save_run(run, out)
        (out / "transfer.txt").write_text(report.to_text() + "\n", encoding="utf-8")
    return run, report


def preset_metrics(preset: Preset, data: InteractionData | None = None) -> pd.DataFrame:
    """Re-evaluate a preset's learner on its own split (what its model card reports)."""
    from tfmetarec.evaluation.protocol import evaluate_scenarios
    from tfmetarec.evaluation.report import tidy

    prepared = experiment.prepare(preset.config, data)
    return tidy(evaluate_scenarios({preset.config.learner.name: preset.learner}, prepared.encoded,
                                   prepared.scenarios, batch_size=preset.config.train.batch_size, jit_compile=False))
