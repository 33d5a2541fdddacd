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
            "--inner-steps", "1", "--workdir", str(tmp_path), "--quiet", "--binary"]
    assert main(["quickstart", *args]) == 0
    out = capsys.readouterr().out
    assert "user_item_cold" in out and "AUC" in out
    for name in ("config.json", "encoder.json", "learner.keras", "baseline.keras", "report.md", "report.csv"):
        assert (tmp_path / name).exists(), name
    assert main(["evaluate", "--workdir", str(tmp_path)]) == 0
    assert "user_cold" in capsys.readouterr().out


def test_train_accepts_every_registered_model_name(tmp_path, capsys):
    args = ["train", "--model", "two_tower", "--meta-steps", "5", "--embedding-dim", "4", "--hidden-units", "8",
            "--inner-steps", "1", "--workdir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "two_tower"
    with pytest.raises(SystemExit):
        main(["train", "--model", "svd"])
    assert "invalid choice: 'svd'" in capsys.readouterr().err


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert main(["evaluate", "--workdir", str(tmp_path / "nothing")]) == 2
    assert "no trained run" in capsys.readouterr().err
    code = main(["train", "--dataset", "movielens-1m", "--data-dir", str(tmp_path / "missing"), "--quiet"])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_parser_builds_the_same_config_as_defaults():
    from tfmetarec.cli import config_from_args
    from tfmetarec.config import ExperimentConfig

    config = config_from_args(build_parser().parse_args(["train"]))
    assert config == ExperimentConfig()
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_export_bucket_defaults_match_the_serving_contract():
    from tfmetarec.cli import BUCKETS
    from tfmetarec.export.contract import Buckets

    b = Buckets()
    assert BUCKETS == {"users": b.users, "support": b.support, "query": b.query}
