"""The `tfmetarec` command: help, a tiny quickstart, evaluate, and clear errors."""

import json

import pytest

from tfmetarec.cli import build_parser, main


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "evaluate", "quickstart", "examples:"):
        assert word in out


def test_train_help_documents_main_settings(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--dataset", "--data-dir", "--inner-steps", "--inner-lr", "--first-order", "--adapt", "--meta-steps"):
        assert flag in out


def test_tiny_quickstart_then_evaluate(tmp_path, capsys):
    args = ["--meta-steps", "15", "--pretrain-steps", "15", "--embedding-dim", "8", "--hidden-units", "16",
            "--inner-steps", "1", "--workdir", str(tmp_path), "--quiet", "--binary", "--no-xla"]
    assert main(["quickstart", *args]) == 0
    out = capsys.readouterr().out
    assert "user_item_cold" in out and "AUC" in out
    assert "validation users are held out" in out and "\ntrains " in out  # --quiet still prints the split
    for name in ("config.json", "encoder.json", "learner.keras", "baseline.keras", "report.md", "report.csv"):
        assert (tmp_path / name).exists(), name
    assert main(["evaluate", "--workdir", str(tmp_path)]) == 0
    assert "user_cold" in capsys.readouterr().out


def test_train_accepts_every_registered_model_name(tmp_path, capsys):
    args = ["train", "--model", "two_tower", "--meta-steps", "5", "--embedding-dim", "4", "--hidden-units", "8",
            "--inner-steps", "1", "--pretrain-steps", "0", "--workdir", str(tmp_path), "--quiet", "--no-xla"]
    assert main(args) == 0
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "two_tower"
    with pytest.raises(SystemExit):
        main(["train", "--model", "svd"])
    assert "invalid choice: 'svd'" in capsys.readouterr().err


def test_parser_builds_the_same_config_as_defaults():
    from tfmetarec.cli import config_from_args
    from tfmetarec.config import ExperimentConfig

    config = config_from_args(build_parser().parse_args(["train"]))
    assert config == ExperimentConfig()
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_item_warmup_takes_a_shrinkage_or_off(capsys):
    from tfmetarec.cli import config_from_args

    def parsed(value):
        return config_from_args(build_parser().parse_args(["train", "--item-warmup", value])).train.item_warmup

    assert parsed("off") is None and parsed("2") == 2.0
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", "--item-warmup", "-1"])
    assert exit_.value.code == 2 and "--item-warmup: must be >= 0" in capsys.readouterr().err


def test_any_constructor_option_is_a_setting_checked_before_tensorflow(capsys):
    """--set reaches every constructor option (learner, model, the query loss's fields, train, split);
    typed flags are shortcuts for the same keys; mistakes name the key and exit 2 at once."""
    from tfmetarec.cli import config_from_args

    args = build_parser().parse_args(["train", "--learner", "meta_sgd", "--inner-lr", "0.2", "--set",
                                      "learner.msl_anneal_steps=7", "--set", "model.hidden_units=64,32",
                                      "--set", "learner.query_loss.ranking_weight=0.3", "--set",
                                      "train.max_support=64", "--set", "split.query_size=5"])
    config = config_from_args(args)
    assert config.learner.options == {"inner_lr": 0.2, "msl_anneal_steps": 7,
                                      "query_loss": config.learner.query_loss}
    assert config.learner.learn_inner_lr == "per_parameter" and config.learner.query_loss.ranking_weight == 0.3
    assert config.model.hidden_units == (64, 32) and config.train.max_support == 64 and config.split.query_size == 5
    for argv, message in [
        (["--set", "learner.inner_lrr=1"], "learner 'maml' takes no option 'inner_lrr'; its options are"),
        (["--set", "learner.inner_lr=fast"], "learner.inner_lr must be a number >= 0, got 'fast'"),
        (["--set", "learner.inner_steps=-2"], "learner.inner_steps must be an integer >= 0"),
        (["--set", "model.hidden_units=64,0"], "model.hidden_units must be a list of ints >= 1"),
        (["--learner", "prototype", "--inner-lr", "0.1"], "learner 'prototype' takes no option 'inner_lr'"),
        (["--learner", "fomaml", "--set", "learner.first_order=false"], "'fomaml' is MAML with first_order=True"),
        (["--inner-lr", "0.1", "--set", "learner.inner_lr=0.2"], "learner.inner_lr set twice"),
        (["--set", "oops"], "--set expects KEY=VALUE"),
        (["--set", "learner.query_loss.nope=1"], "learner.query_loss has no field 'nope'"),
        (["--model", "cf", "--hidden-units", "8"], "model 'cf' takes no option 'hidden_units'"),
    ]:
        assert main(["train", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_export_bucket_defaults_are_the_serving_contracts():
    from tfmetarec.export.contract import Buckets

    action = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions}
    b = Buckets()
    assert (action["user_buckets"].default, action["support_buckets"].default, action["query_buckets"].default) == (
        b.users, b.support, b.query)


def test_item_vectors_from_a_file_train_round_trip_through_a_preset_and_bad_files_fail_clearly(tmp_path, capsys):
    import numpy as np

    from tfmetarec.presets import from_preset, save_to_preset
    from tfmetarec.workflows.train import load_run

    ids = np.arange(1, 401)  # the synthetic dataset's items; the last 100 get no vector
    path = tmp_path / "vectors.npz"
    np.savez(path, item=ids[:300], vectors=np.random.default_rng(0).normal(size=(300, 5)))
    run_dir = tmp_path / "run"
    args = ["train", "--meta-steps", "5", "--embedding-dim", "4", "--hidden-units", "8", "--inner-steps", "1",
            "--pretrain-steps", "0", "--quiet", "--no-xla", "--item-vectors", str(path)]
    assert main([*args, "--workdir", str(run_dir)]) == 0
    run = load_run(run_dir)
    vectors = run.learner.model.item_vectors["vectors"]
    rows = run.prepared.encoded.item_rows(ids)
    assert vectors.shape[1] == 5 and np.abs(vectors[rows[:300]]).sum(1).min() > 0 and not vectors[rows[300:]].any()
    preset = from_preset(save_to_preset(run.learner, run.config, run.prepared.encoder, tmp_path / "preset",
                                        name="vectors", description="with item vectors"))
    np.testing.assert_array_equal(preset.learner.model.item_vectors["vectors"], vectors)

    np.savez(tmp_path / "unknown.npz", item=np.array([1, 5000]), vectors=np.ones((2, 5)))
    assert main([*args, "--workdir", str(tmp_path / "r2"), "--item-vectors", str(tmp_path / "unknown.npz")]) == 2
    assert "1 item ID(s) are not items of the data, e.g. [5000]" in capsys.readouterr().err
    assert main([*args, "--workdir", str(tmp_path / "r3"), "--item-vectors", str(tmp_path / "none.npz")]) == 2
    assert "none.npz is not a file" in capsys.readouterr().err
