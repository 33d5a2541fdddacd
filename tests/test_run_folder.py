"""Results you can trust: guarded run folders, exact resume after SIGKILL, a fast and quiet CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfmetarec.cli import main
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
from tfmetarec.run_folder import RunFolder, RunFolderError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--meta-steps", "6", "--pretrain-steps", "3", "--embedding-dim", "4", "--hidden-units", "8",
        "--inner-steps", "1", "--batch-size", "8", "--quiet", "--no-xla"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _tiny_config(**learner) -> ExperimentConfig:
    return ExperimentConfig(model=ModelConfig("melu", embedding_dim=4, hidden_units=(8,)),
                            learner=LearnerConfig("maml", inner_steps=1, **learner),
                            train=TrainConfig(meta_steps=6, pretrain_steps=3, batch_size=8, jit_compile=False))


def test_a_folder_holding_another_run_is_refused_naming_the_keys(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _tiny_config().save(run / "config.json")
    before = (run / "config.json").read_bytes()
    assert main(["train", *TINY, "--inner-lr", "0.9", "--workdir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "learner.inner_lr: 0.05 -> 0.9" in err and "--overwrite" in err
    assert main(["train", *TINY, "--inner-lr", "0.9", "--workdir", str(run), "--resume"]) == 2
    assert "learner.inner_lr" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == before, "a refused run changes nothing"
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    # the same settings continue; --resume needs a run
    assert RunFolder(run).check(_tiny_config()) == "continue"
    # training longer (or on other replicas, or in other task slices) continues the same stream; fewer steps
    # are refused
    longer = dataclasses.replace(_tiny_config(), train=TrainConfig(meta_steps=9, pretrain_steps=3, batch_size=8,
                                                                   jit_compile=False, strategy="mirrored"))
    assert RunFolder(run).check(longer, mode="resume") == "continue"
    sliced = dataclasses.replace(_tiny_config(), train=dataclasses.replace(_tiny_config().train, task_chunks=4))
    assert RunFolder(run).check(sliced, mode="resume") == "continue"
    # a trimmed run saved before the padded stream's floor (config format 5) continues; a padded one does not
    saved = json.loads((run / "config.json").read_text())
    del saved["train"]["padded_min_real"]
    (run / "config.json").write_text(json.dumps({**saved, "format": 5}))
    assert RunFolder(run).check(_tiny_config()) == "continue"
    padded = dataclasses.replace(_tiny_config(), train=dataclasses.replace(_tiny_config().train, trim_supports=False))
    (run / "config.json").write_text(json.dumps({**saved, "format": 5, "train": {**saved["train"],
                                                                                "trim_supports": False}}))
    with pytest.raises(RunFolderError, match="train.padded_min_real: None -> 0.85"):
        RunFolder(run).check(padded)
    _tiny_config().save(run / "config.json")
    shorter = dataclasses.replace(_tiny_config(), train=TrainConfig(meta_steps=4, pretrain_steps=3, batch_size=8,
                                                                    jit_compile=False))
    with pytest.raises(RunFolderError, match="train.meta_steps: 6 -> 4"):
        RunFolder(run).check(shorter)
    assert main(["train", *TINY, "--workdir", str(tmp_path / "empty"), "--resume"]) == 2
    assert "holds no run to continue" in capsys.readouterr().err


def test_overwrite_starts_fresh_and_keeps_files_that_are_not_the_runs(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _tiny_config().save(run / "config.json")
    (run / "checkpoints" / "learner").mkdir(parents=True)
    (run / "checkpoints" / "learner" / "checkpoint").write_text("stale")
    (run / "notes.txt").write_text("mine")
    assert main(["train", *TINY, "--inner-lr", "0.9", "--workdir", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["learner"]["options"]["inner_lr"] == 0.9
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "learner.keras").exists()
    assert (run / "checkpoints" / "learner" / "checkpoint").read_text() != "stale"
    # continuing the finished run with identical settings trains nothing more and succeeds
    assert main(["train", *TINY, "--inner-lr", "0.9", "--workdir", str(run), "--resume"]) == 0
    assert "Saved the trained run" in capsys.readouterr().out


def test_run_files_without_a_config_and_a_corrupt_config_are_refused(tmp_path):
    orphan = tmp_path / "orphan"
    (orphan / "checkpoints").mkdir(parents=True)
    with pytest.raises(RunFolderError, match="no config.json"):
        RunFolder(orphan).check(_tiny_config())
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{broken")
    with pytest.raises(RunFolderError, match=r"corrupt.config\.json is not a valid experiment config"):
        RunFolder(corrupt).check(_tiny_config())
    assert RunFolder(corrupt).check(_tiny_config(), mode="overwrite") == "overwrite"


def _train_cmd(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tfmetarec.cli", "train", "--meta-steps", "160", "--pretrain-steps", "20",
            "--embedding-dim", "4", "--hidden-units", "8", "--inner-steps", "1", "--batch-size", "8",
            "--checkpoint-every", "10", "--quiet", "--no-xla", "--workdir", str(workdir), *extra]


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    import tfmetarec.learners  # noqa: F401  (registers the classes)

    return [w.numpy() for w in keras.saving.load_model(path).weights]


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(tmp_path):
    """A real SIGKILL mid-run; the resumed run's weights equal an uninterrupted run's exactly."""
    straight = subprocess.Popen(_train_cmd(tmp_path / "straight"), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd(tmp_path / "killed"), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints" / "learner"
    deadline = time.time() + 300
    try:
        while not list(checkpoints.glob("ckpt-*.index")):
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    saved = sorted(int(p.name[5:-6]) for p in checkpoints.glob("ckpt-*.index"))
    assert saved and max(saved) < 160 and not (tmp_path / "killed" / "learner.keras").exists()
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err
    assert "I0000" not in err and "oneDNN" not in err and "retracing" not in err, f"TensorFlow chatter: {err}"
    resumed = subprocess.run(_train_cmd(tmp_path / "killed", "--resume"), env=_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("learner.keras", "baseline.keras"):
        for a, b in zip(_weights(tmp_path / "straight" / name), _weights(tmp_path / "killed" / name), strict=True):
            np.testing.assert_array_equal(a, b)
