"""A run's folder: the one place that knows its file names, and the rule that one folder holds one run.

A run folder holds ``config.json`` (written when training starts), ``encoder.json``,
``split/``, checkpoints, TensorBoard logs and, once finished, ``learner.keras`` and
``baseline.keras``; evaluation adds its reports, curves and streaming results, serving its
cached export. :class:`RunFolder` names every one of them; training, evaluation, export,
fine-tuning and the command line all go through it.

:meth:`RunFolder.check` decides what training may do with a folder, without importing
TensorFlow (so the command line answers at once):

* an empty or new folder starts a fresh run;
* a folder holding a run with the **same** config continues it from its checkpoints (more
  ``meta_steps`` / ``pretrain_steps``, or another ``strategy``, still count as the same run:
  it trains on to the new step counts);
* a folder holding a run with a **different** config is refused, naming the differing
  keys, unless the caller asks to overwrite it (its run files are then removed);
* ``resume`` insists that there is a run with the same config to continue.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfmetarec.config import ExperimentConfig, config_differences

if TYPE_CHECKING:  # pragma: no cover
    from tfmetarec.data.features import FeatureEncoder
    from tfmetarec.learners import MetaLearner

CONFIG = "config.json"
ENCODER = "encoder.json"
SPLIT = "split"
LEARNER = "learner.keras"
BASELINE = "baseline.keras"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
SELECTION = "selection"
REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
REPORT_TESTS = "report_tests.csv"
FINETUNE = "finetune.json"
CURVES = "curves"
STREAMING = "streaming"
TRANSFER = "transfer.txt"
SERVING = "serving"
RUN_FILES = (CONFIG, ENCODER, SPLIT, LEARNER, BASELINE, CHECKPOINTS, LOGS, SELECTION, REPORT_MD, REPORT_CSV,
             REPORT_TESTS, FINETUNE, CURVES, STREAMING, TRANSFER, SERVING)
"""What a run writes into its folder (``--overwrite`` removes exactly these)."""
TRAINED = (LEARNER, ENCODER, CONFIG)
"""What a finished run holds."""
MODES = ("continue", "resume", "overwrite")
EXTENDABLE = ("meta_steps", "pretrain_steps")
"""Training settings a continued run may raise: the episode stream is addressed by position,
so training longer continues exactly where the shorter run stopped."""


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (another run, unusable path, nothing to resume)."""


def check_path(path: str | os.PathLike, flag: str = "--workdir") -> Path:
    """``path`` as a folder we can create or write into; otherwise a :class:`RunFolderError`
    naming ``flag``."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{flag} {out} is a file, not a folder.")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RunFolderError(f"{flag} {out} cannot be created: {probe} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunFolderError(f"{flag} {out} is not writable ({probe} does not allow writing).")
    try:  # permission bits do not tell everything (root, read-only mounts, /proc): write a file and remove it
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".tfmetarec-probe-"):
            pass
    except OSError as err:
        raise RunFolderError(f"{flag} {out} is not writable: writing in {probe} fails ({err.strerror}).") from err
    return out


class RunFolder:
    """The files of one run in ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({os.fspath(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- file names -------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def encoder_file(self) -> Path:
        return self.path / ENCODER

    @property
    def split_dir(self) -> Path:
        return self.path / SPLIT

    @property
    def learner_file(self) -> Path:
        return self.path / LEARNER

    @property
    def baseline_file(self) -> Path:
        return self.path / BASELINE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoints(self, tag: str) -> Path:
        """Checkpoints of one training (``learner`` or ``baseline``)."""
        return self.path / CHECKPOINTS / tag

    def logs(self, tag: str) -> Path:
        """TensorBoard logs of one training."""
        return self.path / LOGS / tag

    def selection(self, tag: str) -> Path:
        """The checkpoint choice of one training: its validation log and best weights."""
        return self.path / SELECTION / tag

    @property
    def report_files(self) -> dict[str, Path]:
        return {"md": self.path / REPORT_MD, "csv": self.path / REPORT_CSV, "tests": self.path / REPORT_TESTS,
                "finetune": self.path / FINETUNE}

    @property
    def curves_dir(self) -> Path:
        return self.path / CURVES

    @property
    def streaming_dir(self) -> Path:
        return self.path / STREAMING

    @property
    def transfer_file(self) -> Path:
        return self.path / TRANSFER

    @property
    def serving_dir(self) -> Path:
        """Where ``recommend`` keeps the run's own export."""
        return self.path / SERVING

    # -- one run per folder -------------------------------------------------------------------
    def existing(self) -> list[str]:
        """The run files the folder holds (empty for a new or unrelated folder)."""
        return [name for name in RUN_FILES if (self.path / name).exists()] if self.path.is_dir() else []

    def check(self, config: ExperimentConfig, mode: str = "continue") -> str:
        """What training here with ``config`` does: ``"fresh"``, ``"continue"`` or
        ``"overwrite"`` (then :meth:`clear` empties the folder).

        Raises :class:`RunFolderError` for a folder holding another run (naming the keys that
        differ), run files without a readable ``config.json``, or ``mode="resume"`` with
        nothing to resume. Nothing is changed on disk.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        out = check_path(self.path)
        found = self.existing()
        if not found:
            if mode == "resume":
                raise RunFolderError(f"--resume: {out} holds no run to continue (no {CONFIG} or checkpoints).")
            return "fresh"
        if mode == "overwrite":
            return "overwrite"
        if CONFIG not in found:
            raise RunFolderError(f"{out} holds run files ({', '.join(found)}) but no {CONFIG}, so it cannot tell "
                                 "which settings they belong to; pass --overwrite to start a fresh run there.")
        try:
            saved = self.load_config()
        except ValueError as err:
            raise RunFolderError(f"{err}; pass --overwrite to start a fresh run in {out}.") from None
        before, now = saved.to_dict(), config.to_dict()
        for key in EXTENDABLE:  # more steps extend the same stream; fewer would leave a run its config misstates
            if now["train"][key] >= before["train"][key]:
                before["train"][key] = now["train"][key]
        before["train"]["strategy"] = now["train"]["strategy"]  # replicas share the same episodes
        before["train"]["task_chunks"] = now["train"].get("task_chunks")  # the same gradients, another cut
        if now["train"].get("trim_supports"):  # the padded stream's floor shapes nothing a trimmed run draws
            before["train"]["padded_min_real"] = now["train"].get("padded_min_real")
        differences = config_differences(before, now)
        if differences:
            raise RunFolderError(
                f"{out} holds a run with other settings ({'; '.join(differences)}). Choose another --workdir, "
                "repeat the run's own settings to continue it, or pass --overwrite to replace it.")
        return "continue"

    def prepare(self, config: ExperimentConfig, mode: str = "continue") -> str:
        """:meth:`check`, then clear the folder when overwriting; returns the decision."""
        decision = self.check(config, mode)
        if decision == "overwrite":
            self.clear()
        return decision

    def clear(self) -> list[str]:
        """Remove the run files (and nothing else); returns their names."""
        removed = self.existing()
        for name in removed:
            path = self.path / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        return removed

    # -- reading and writing a run -----------------------------------------------------------------
    def save_config(self, config: ExperimentConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        config.save(self.config_file)

    def load_config(self) -> ExperimentConfig:
        return ExperimentConfig.load(self.config_file)

    def save_encoder(self, encoder: FeatureEncoder) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.encoder_file.write_text(json.dumps(encoder.to_dict()), encoding="utf-8")

    def load_encoder(self) -> FeatureEncoder:
        from tfmetarec.data.features import FeatureEncoder

        try:
            values = json.loads(self.encoder_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{self.encoder_file} is not a valid encoder file: {err}") from err
        return FeatureEncoder.from_dict(values)

    def require_trained(self) -> None:
        """A clear :class:`FileNotFoundError` unless the folder holds a finished run."""
        missing = [name for name in TRAINED if not (self.path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path} holds no trained run (missing {', '.join(missing)}); run "
                                    "`tfmetarec train` first.")

    def save_learners(self, learner: MetaLearner, baseline: MetaLearner | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        learner.save(self.learner_file)
        if baseline is not None:
            baseline.save(self.baseline_file)

    def load_learner(self, which: str = LEARNER) -> MetaLearner:
        """A saved learner (``learner.keras`` or ``baseline.keras``); a missing, empty or corrupt
        file is a clear error naming it."""
        return load_keras(self.path / which)


def load_keras(path: Path) -> Any:
    """A ``.keras`` learner file, with an error that names the file when it is missing, empty, not
    a Keras archive, or holds a NaN or infinite weight (named)."""
    import keras

    import tfmetarec.learners  # noqa: F401  (registers the learner and model classes)

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (an interrupted save?); train again or restore it.")
    try:
        loaded = keras.saving.load_model(path, safe_mode=True)  # nothing is unpickled
    except Exception as err:  # Keras raises many types for a bad archive
        raise ValueError(f"{path} could not be loaded as a learner ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'}).") from err
    bad = nonfinite_weights(loaded)
    if bad:
        raise ValueError(f"{path} holds non-finite weights (NaN or inf) in {', '.join(bad[:5])}"
                         f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}: the file was damaged or "
                         "training diverged; restore an earlier checkpoint or train again.")
    return loaded


def nonfinite_weights(layer: Any) -> list[str]:
    """The paths of a Keras object's floating-point weights that hold a NaN or an infinity."""
    import numpy as np

    return [w.path for w in layer.weights
            if np.issubdtype(np.dtype(w.dtype), np.floating) and not np.isfinite(np.asarray(w.numpy())).all()]


__all__ = ["RUN_FILES", "RunFolder", "RunFolderError", "check_path", "load_keras", "nonfinite_weights"]
