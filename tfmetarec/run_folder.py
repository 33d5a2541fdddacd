"""Run folders that cannot be mixed up: one config per folder, checked before training.

A run folder holds ``config.json`` (written when training starts), checkpoints, logs and,
once finished, the saved learners. :func:`check_run_folder` decides what ``train`` may do
with a folder, without importing TensorFlow (so the command line answers at once):

* an empty or new folder starts a fresh run;
* a folder holding a run with the **same** config continues it from its checkpoints (more
  ``meta_steps`` / ``pretrain_steps``, or another ``strategy``, still count as the same run:
  it trains on to the new step counts);
* a folder holding a run with a **different** config is refused, naming the differing
  keys, unless the caller asks to overwrite it (its run files are then removed);
* ``resume`` insists that there is a run with the same config to continue.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tfmetarec.config import ExperimentConfig, config_differences

RUN_FILES = (
    "config.json", "encoder.json", "split", "learner.keras", "baseline.keras", "checkpoints", "logs", "report.md",
    "report.csv", "report_tests.csv", "finetune.json", "curves", "transfer.txt",
)
"""What a run writes into its folder (``--overwrite`` removes exactly these)."""
MODES = ("continue", "resume", "overwrite")
EXTENDABLE = ("meta_steps", "pretrain_steps")
"""Training settings a continued run may raise: the episode stream is addressed by position,
so training longer continues exactly where the shorter run stopped."""


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (another run, unusable path, nothing to resume)."""


def check_path(workdir: str | os.PathLike) -> Path:
    """``workdir`` as a folder we can create or write into; otherwise a :class:`RunFolderError`."""
    out = Path(workdir).expanduser()
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--workdir {out} is a file, not a folder.")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RunFolderError(f"--workdir {out} cannot be created: {probe} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunFolderError(f"--workdir {out} is not writable ({probe} does not allow writing).")
    return out


def existing_run_files(workdir: Path) -> list[str]:
    """The run files ``workdir`` holds (empty for a new or unrelated folder)."""
    return [name for name in RUN_FILES if (workdir / name).exists()] if workdir.is_dir() else []


def check_run_folder(workdir: str | os.PathLike, config: ExperimentConfig, mode: str = "continue") -> str:
    """What training in ``workdir`` with ``config`` does: ``"fresh"``, ``"continue"`` or
    ``"overwrite"`` (the caller then clears the folder with :func:`clear_run`).

    Raises :class:`RunFolderError` for a folder holding another run (naming the keys that
    differ), run files without a readable ``config.json``, or ``mode="resume"`` with
    nothing to resume. Nothing is changed on disk.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    out = check_path(workdir)
    found = existing_run_files(out)
    if not found:
        if mode == "resume":
            raise RunFolderError(f"--resume: {out} holds no run to continue (no config.json or checkpoints).")
        return "fresh"
    if mode == "overwrite":
        return "overwrite"
    if "config.json" not in found:
        raise RunFolderError(f"{out} holds run files ({', '.join(found)}) but no config.json, so it cannot tell "
                             "which settings they belong to; pass --overwrite to start a fresh run there.")
    try:
        saved = ExperimentConfig.load(out / "config.json")
    except ValueError as err:
        raise RunFolderError(f"{err}; pass --overwrite to start a fresh run in {out}.") from None
    before, now = saved.to_dict(), config.to_dict()
    for key in EXTENDABLE:  # more steps extend the same stream; fewer would leave a run its config misstates
        if now["train"][key] >= before["train"][key]:
            before["train"][key] = now["train"][key]
    before["train"]["strategy"] = now["train"]["strategy"]  # replicas share the same episodes
    differences = config_differences(before, now)
    if differences:
        raise RunFolderError(
            f"{out} holds a run with other settings ({'; '.join(differences)}). Choose another --workdir, "
            "repeat the run's own settings to continue it, or pass --overwrite to replace it.")
    return "continue"


def clear_run(workdir: str | os.PathLike) -> list[str]:
    """Remove the run files of ``workdir`` (and nothing else); returns their names."""
    out = Path(workdir)
    removed = existing_run_files(out)
    for name in removed:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def prepare_run_folder(workdir: str | os.PathLike, config: ExperimentConfig, mode: str = "continue") -> str:
    """:func:`check_run_folder`, then clear the folder when overwriting; returns the decision."""
    decision = check_run_folder(workdir, config, mode)
    if decision == "overwrite":
        clear_run(workdir)
    return decision
