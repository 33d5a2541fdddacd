"""Transfer a preset's weights into a learner built for other data: what transfers, by value.

The user's data usually has other users, items and feature vocabularies than the
preset's. A fresh learner is built for the new data with the preset's model and
learner settings (:mod:`tfmetarec.presets.finetune`); then every variable is filled from
the preset where it can be:

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

from dataclasses import dataclass, field

import numpy as np

from tfmetarec.data import FeatureEncoder
from tfmetarec.learners import MetaLearner


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
