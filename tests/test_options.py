"""A learner or model is its registered name and exactly its constructor's keyword arguments: read from
the source without TensorFlow, checked the same way by the config, ``--set`` and the constructor, and
saved with the run. Adding a constructor argument is the only edit a new setting needs."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfmetarec import registry
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, apply_settings
from tfmetarec.objectives import QueryLoss
from tfmetarec.options import Option, OptionError, parse_annotation

ROOT = Path(__file__).resolve().parents[1]


def test_annotations_become_types_and_limits_that_check_and_parse():
    steps = Option("inner_steps", "Annotated[int, AtLeast(0)]", 5, parse_annotation("Annotated[int, AtLeast(0)]"))
    assert steps.check(3) == 3 and steps.parse("7") == 7
    for bad in (-1, 2.5, "3", True, None):
        with pytest.raises(OptionError, match="inner_steps must be an integer >= 0"):
            steps.check(bad)
    adapt = Option("adapt", "str | Sequence[str]", "decision", parse_annotation("str | Sequence[str]"))
    assert adapt.parse("decision") == "decision" and adapt.parse("a,b") == ("a", "b") and adapt.check(["x"]) == ("x",)
    mode = Option("m", "Literal['fixed', 'per_parameter']", "fixed", parse_annotation("Literal['fixed', 'per_parameter']"))
    with pytest.raises(OptionError, match="one of 'fixed', 'per_parameter'"):
        mode.check("learned")
    dims = Option("d", "Annotated[Mapping[str, int], AtLeast(1)] | None", None,
                  parse_annotation("Annotated[Mapping[str, int], AtLeast(1)] | None"))
    assert dims.parse("genres:16,year:8") == {"genres": 16, "year": 8} and dims.parse("none") is None
    with pytest.raises(OptionError):
        dims.check({"genres": 0})
    loss = Option("query_loss", "QueryLoss | None", None, parse_annotation("QueryLoss | None"))
    assert loss.check({"ranking_weight": 0.5}) == QueryLoss(ranking_weight=0.5)


def test_settings_read_from_source_are_the_constructors_own():
    """The source reader and Python's own signature agree on every registered class."""
    from tfmetarec import learners, models

    for kind, get in (("learner", learners.get), ("model", models.get)):
        for name in registry.names(kind):
            cls = get(name)
            read = registry.options(kind, name)
            real: dict = {}
            for klass in cls.__mro__:  # the keyword arguments, following **kwargs into the bases
                if "__init__" not in vars(klass) or not klass.__module__.startswith("tfmetarec."):
                    continue
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.default is not inspect.Parameter.empty and p.name not in real:
                        real[p.name] = p.default
            skip = registry.MODEL_SKIP if kind == "model" else registry.LEARNER_SKIP
            real = {k: tuple(v) if isinstance(v, list) else v for k, v in real.items() if k not in skip}
            fixed = registry.entry(kind, name).fixed
            assert {k: o.default for k, o in read.items()} == {**real, **fixed}, (kind, name)


def test_configs_resolve_check_and_round_trip_without_tensorflow():
    config = ExperimentConfig(learner=LearnerConfig("fomaml", inner_lr=0.1), model=ModelConfig("cf", embedding_dim=8))
    assert config.learner.first_order and config.learner.inner_lr == 0.1 and config.learner.inner_steps == 5
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert LearnerConfig("maml") == LearnerConfig("maml", inner_steps=5)  # equal when the resolved settings are
    with pytest.raises(ValueError, match="model 'cf' takes no option 'hidden_units'"):
        ModelConfig("cf", hidden_units=(8,))
    with pytest.raises(ValueError, match="config format 1"):
        ExperimentConfig.from_dict({**config.to_dict(), "format": 1})
    # a run written before checkpoint choice reads back as what it trained with
    old = config.to_dict()
    del old["split"]["validation_item_fraction"], old["train"]["select_every"], old["train"]["select_patience"]
    del old["train"]["trim_supports"], old["train"]["smallest_bucket"]
    before = ExperimentConfig.from_dict({**old, "format": 2})
    assert before.split.validation_item_fraction == 0.0 and before.train.select_every == 0
    assert before.train.select_patience == 0
    assert config.split.validation_item_fraction == 0.1 and config.train.select_every == 100
    assert before.train.trim_supports is False and config.train.trim_supports is True
    # a run written before trimmed supports reads back untrimmed, what it trained with
    old = config.to_dict()
    del old["train"]["trim_supports"], old["train"]["smallest_bucket"]
    assert ExperimentConfig.from_dict({**old, "format": 3}).train.trim_supports is False
    # a run written before the smallest bucket of 6 reads back with buckets from 8
    old = config.to_dict()
    del old["train"]["smallest_bucket"]
    assert config.train.smallest_bucket == 6
    assert ExperimentConfig.from_dict({**old, "format": 4}).train.smallest_bucket == 8
    assert ExperimentConfig.from_dict({**old, "format": 4}).train.trim_supports is True
    # a run written before the padded stream's floor reads back with its powers of two
    old = config.to_dict()
    del old["train"]["padded_min_real"]
    assert config.train.padded_min_real == 0.85
    assert ExperimentConfig.from_dict({**old, "format": 5}).train.padded_min_real is None
    with pytest.raises(ValueError, match="train.padded_min_real must be > 0"):
        apply_settings(config, {"train.padded_min_real": 0.0})
    with pytest.raises(ValueError, match="train.padded_min_real must be <= 1"):
        apply_settings(config, {"train.padded_min_real": 1.5})
    assert apply_settings(config, {"train.padded_min_real": 1.0}).train.padded_min_real == 1.0  # one bucket a size
    assert apply_settings(config, {"train.padded_min_real": "none"}, from_text=True).train.padded_min_real is None
    changed = apply_settings(config, {"learner.name": "reptile", "learner.train_on_query": "false"}, from_text=True)
    assert changed.learner.name == "reptile" and changed.learner.train_on_query is False
    assert changed.learner.inner_lr == 0.1  # options the new learner takes carry over


def test_settings_load_no_tensorflow():
    code = ("import sys\nfrom tfmetarec.config import ExperimentConfig, LearnerConfig, apply_settings\n"
            "c = apply_settings(ExperimentConfig(), {'learner.inner_lr': '0.01', 'model.hidden_units': '8,8'}, True)\n"
            "print(c.learner.inner_lr, c.model.hidden_units, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["0.01", "(8,", "8)", "False"], done.stdout + done.stderr


PROBE = '''
import json, os, sys
from pathlib import Path
from tfmetarec.config import ExperimentConfig, LearnerConfig
config = ExperimentConfig(learner=LearnerConfig("maml", probe_weight=0.5))
assert config.learner.probe_weight == 0.5 and LearnerConfig("maml").probe_weight == 0.25
try:
    LearnerConfig("maml", probe_weight=-1.0)
    raise SystemExit("a value outside the new option's limit passed")
except ValueError as err:
    assert "probe_weight must be a number >= 0" in str(err), err
from tfmetarec.cli import main
workdir = Path(sys.argv[1])
tiny = ["--meta-steps", "2", "--pretrain-steps", "1", "--embedding-dim", "4", "--hidden-units", "8", "--inner-steps",
        "1", "--batch-size", "8", "--quiet", "--no-xla", "--workdir", str(workdir)]
assert main(["train", "--set", "learner.probe_weight=-2", *tiny]) == 2
assert "tensorflow" not in sys.modules, "a bad --set must be refused before TensorFlow loads"
assert main(["train", "--set", "learner.probe_weight=0.75", *tiny]) == 0
saved = json.loads((workdir / "config.json").read_text())
assert saved["learner"]["options"]["probe_weight"] == 0.75, saved
from tfmetarec.workflows import load_run
run = load_run(workdir)
assert run.learner.probe_weight == 0.75 and run.config.learner.probe_weight == 0.75
print("probe ok")
'''


def test_a_new_constructor_argument_is_a_setting_everywhere_with_no_other_edit(tmp_path):
    """Copy the package, add one keyword argument to MAML's constructor (nothing else), and reach it
    from a Python config, from ``--set`` (checked before TensorFlow loads) and from a saved run."""
    package = tmp_path / "src" / "tfmetarec"
    shutil.copytree(ROOT / "tfmetarec", package, ignore=shutil.ignore_patterns("__pycache__", "saved_models"))
    maml = package / "learners" / "maml.py"
    text = maml.read_text(encoding="utf-8")
    anchor = "        msl_anneal_steps: Annotated[int, AtLeast(0)] = 0,\n"
    assert text.count(anchor) == 1
    maml.write_text(text.replace(anchor, anchor + "        probe_weight: Annotated[float, AtLeast(0)] = 0.25,\n"),
                    encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "src"),
                                            "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0 and "probe ok" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
