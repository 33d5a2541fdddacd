"""The catalogue of bad input: every case the reliability work found, fed here or named here, with
the class of outcome and the message asserted once.

Fed in this file (cheapest level that can fail):

* CLI argument and path errors: exit 2 with a message naming the flag, before TensorFlow loads
  (all cases in one fresh process, in the order a user would meet them);
* data frames and split files checked against the ratings they describe;
* saved learners and presets that are empty, corrupt, non-finite or whose parts disagree, and a
  run reloaded on other data than it was trained on;
* meta-training that diverges: a message, the last good checkpoint kept.

Named, because their fixture is an export or a trainer that a file of its own already builds
(``NAMED`` lists them; a test below fails when one of them disappears):
requests and states refused by the SavedModel and the ONNX client, checkpoints of another
stream or learner, malformed data files by file and line.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import with_roles

ROOT = Path(__file__).resolve().parents[1]


# -- the CLI, before TensorFlow loads ----------------------------------------------------------------
CLI_RUNNER = """
import contextlib, io, json, os, sys
from tfmetarec.cli import main
out = []
for env, args in json.loads(sys.argv[1]):
    os.environ.update(env)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
    out.append([code, err.getvalue(), "tensorflow" in sys.modules])
print(json.dumps(out))
"""


def _cli_cases(tmp: Path) -> list[tuple[dict, list[str], str]]:
    a_file = tmp / "file"
    a_file.write_text("x")
    return [  # (environment, arguments, what the error says)
        ({}, ["train", "--meta-steps", "-5"], "--meta-steps: must be >= 1"),
        ({}, ["train", "--batch-size", "0"], "--batch-size: must be >= 1"),
        ({}, ["train", "--inner-lr", "nan"], "--inner-lr: must be a finite number"),
        ({}, ["train", "--outer-lr", "0"], "--outer-lr: must be > 0"),
        ({}, ["train", "--hidden-units", "8", "0"], "--hidden-units: must be >= 1"),
        ({}, ["train", "--ranking-weight", "1.5"], "--ranking-weight: must be <= 1"),
        ({}, ["train", "--seed", "-1"], "--seed: must be >= 0"),
        ({}, ["train", "--set", "learner.nope=1"], "learner 'maml' takes no option 'nope'"),
        ({}, ["train", "--workdir", str(a_file)], "is a file, not a folder"),
        ({}, ["train", "--workdir", str(a_file / "run")], "cannot be created"),
        ({}, ["train", "--workdir", "/proc/tfmetarec-run"], "--workdir /proc/tfmetarec-run is not writable"),
        ({}, ["train", "--data-dir", str(tmp / "none"), "--dataset", "movielens-1m"], "is not a folder"),
        ({"TFMETAREC_DATA_DIR": str(tmp / "nowhere")}, ["train", "--dataset", "movielens-100k", "--workdir",
                                                          str(tmp / "run")], "no data folder"),
        ({}, ["train", "--split-file", str(tmp / "none.csv")], "does not exist"),
        ({}, ["train", "--fixed-tasks"], "give --split-file too"),
        ({}, ["train", "--validation-item-fraction", "0.7"], "--validation-item-fraction: must be <= 0.5"),
        ({}, ["train", "--item-vectors", str(tmp / "none.npz")], "--item-vectors"),
        ({}, ["train", "--item-vectors", str(a_file)], "must name a .npz / .csv / .tsv / .parquet file"),
        ({}, ["evaluate", "--workdir", str(tmp / "none")], "holds no trained run"),
        ({}, ["export", "--workdir", str(tmp), "--out", str(a_file)], "--out"),
        ({}, ["export", "--workdir", str(tmp), "--out", str(tmp / "out"), "--candidates", "40", "--top-k", "50"],
         "--candidates 40 is fewer than --top-k (50), the items a recommendation names"),
        ({}, ["recommend", "--workdir", str(tmp), "--ratings", "50:abc"], "--ratings: 50:abc is not an integer item ID"),
        ({}, ["recommend", "--workdir", str(tmp), "--ratings", "50"], "ITEM:RATING"),
    ]


def test_cli_argument_and_path_errors_exit_2_naming_the_flag_before_tensorflow_loads(tmp_path):
    cases = _cli_cases(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CLI_RUNNER, json.dumps([[e, a] for e, a, _ in cases])],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for (_, args, message), (code, err, imported) in zip(cases, json.loads(done.stdout), strict=True):
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err, (args, err)
        assert not imported, f"{args}: reported only after TensorFlow loaded"
    assert not any(tmp_path.glob("run*")), "a refused command leaves nothing behind"


# -- data ------------------------------------------------------------------------------------------
def test_ratings_frames_with_fractional_ids_or_ratings_off_the_declared_scale_are_refused():
    from tfmetarec.data import DataFormatError, InteractionData

    users, items = pd.DataFrame({"user": [1, 7]}), pd.DataFrame({"item": [1]})
    ratings = pd.DataFrame({"user": [1, 7.9], "item": [1, 1], "rating": [4.0, 5.0]})
    with pytest.raises(DataFormatError, match=r"ratings.user must hold whole-number IDs; row 1 holds '7.9'"):
        InteractionData("x", ratings, users, items)
    ratings = pd.DataFrame({"user": [1, 7], "item": [1, 1], "rating": [4.0, 1e9]})
    with pytest.raises(DataFormatError, match=r"ratings row 1 \(user 7, item 1\) has rating 1e\+09, outside the "
                                              r"rating range \[1, 5\]"):
        InteractionData("x", ratings, users, items, rating_range=(1, 5))
    assert InteractionData("x", ratings, users, items).ratings.rating.max() == 1e9  # no scale declared: kept


def test_a_side_file_that_is_not_utf8_names_its_file_and_line(tmp_path):
    from tfmetarec.data import DataFormatError
    from tfmetarec.data.movielens import read_item_side_file

    header = tmp_path / "latin_header.csv"
    header.write_bytes("item,réalisateur\n1,x\n".encode("latin-1"))
    body = tmp_path / "latin_body.csv"
    body.write_bytes("item,director\n1,Truffaut\n2,Godard é\n".encode("latin-1"))
    for path, line in ((header, 1), (body, 3)):
        with pytest.raises(DataFormatError, match=rf"{path.name} line {line}: not valid utf-8"):
            read_item_side_file(path, pd.Series([1, 2]))


def test_a_split_must_hold_the_ratings_it_splits(tmp_path):
    from tfmetarec.data import DataFormatError, SplitConfig, cold_start_split, load_dataset
    from tfmetarec.data.published import published_split, read_split_file

    data = load_dataset("synthetic", seed=0)
    split = cold_start_split(data, SplitConfig(seed=0))
    train = split.meta_train.assign(partition="meta_train", role="")[["user", "item", "rating", "partition", "role"]]
    cold = with_roles(split.partitions["user_cold"], "user_cold").reset_index(drop=True)
    base = pd.concat([train, cold], ignore_index=True)
    row = len(train) + 2  # 1-based position of cold's second row
    user, item = cold.user.iloc[1], cold.item.iloc[1]
    for change, message in [
        (dict(rating=99.0), rf"row {row}: user {user} item {item} has rating 99, outside the data's ratings \[1, 5\]"),
        (dict(rating=6.0 - cold.rating.iloc[1] if cold.rating.iloc[1] != 3 else 4.0),
         rf"row {row}: user {user} item {item} has rating \d in the split but \d in the synthetic ratings"),
    ]:
        bad = base.copy()
        for k, v in change.items():
            bad.loc[row - 1, k] = v
        with pytest.raises(DataFormatError, match=message):
            published_split(data, bad)
    unrated = data.items.item[~data.items.item.isin(data.ratings[data.ratings.user == user].item)].iloc[0]
    bad = base.copy()
    bad.loc[row - 1, "item"] = unrated
    with pytest.raises(DataFormatError, match=rf"row {row}: user {user} never rated item {unrated}"):
        published_split(data, bad)
    twice = pd.concat([base, base.iloc[[row - 1]]], ignore_index=True)
    path = tmp_path / "twice.csv"
    twice.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=rf"user {user} rates item {item} twice in partition 'user_cold'"):
        read_split_file(path)


# -- saved learners and presets ---------------------------------------------------------------------
@pytest.fixture
def tiny_copy(tmp_path):
    from tfmetarec.presets import presets_dir

    folder = tmp_path / "tiny"
    shutil.copytree(presets_dir() / "tiny-synthetic", folder)
    return folder


def _re_sign(folder: Path, name: str) -> None:
    """Record ``name``'s new checksum in the preset's metadata (so only the deeper checks can object)."""
    from tfmetarec.presets.store import sha256

    meta = json.loads((folder / "metadata.json").read_text())
    meta["files"][name] = {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / "metadata.json").write_text(json.dumps(meta))


def _rewrite_config(folder: Path, change) -> None:
    stored = json.loads((folder / "config.json").read_text())
    change(stored)
    (folder / "config.json").write_text(json.dumps(stored))
    _re_sign(folder, "config.json")


def test_a_preset_whose_config_and_weights_disagree_is_refused_naming_the_mismatch(tiny_copy):
    from tfmetarec.presets import PresetError, from_preset

    original = (tiny_copy / "config.json").read_text()

    def swap_two_occupations(c):
        vocab = c["encoder"]["vocabs"]["user:occupation"]
        vocab[0], vocab[1] = vocab[1], vocab[0]

    def drop_an_occupation(c):
        c["encoder"]["vocabs"]["user:occupation"] = c["encoder"]["vocabs"]["user:occupation"][:-1]

    for change, message in [
        (lambda c: c["experiment"].update(model={"name": "cf", "options": {}}),
         r"config.json and learner.keras disagree: model: config says 'cf' \(BiasedMF\), learner.keras holds MeLU"),
        (lambda c: c["experiment"]["learner"]["options"].update(inner_lr=5.0),  # one source of truth: the config
         r"disagree: learner.inner_lr: 0.05 in learner.keras, 5.0 in config.json"),  # is the constructor's
        (lambda c: c["experiment"]["model"]["options"].update(embedding_dim=5),
         r"disagree: .*embedding.*shape \(\d+, \d+\) in learner.keras, \(\d+, 5\) from the config"),
        (drop_an_occupation, r"user_occupation_embedding.*shape"),
        (swap_two_occupations, r"the encoder in config.json is not the one the model in learner.keras was built"),
        (lambda c: c["encoder"].update(rating_range=[1.0, 500.0]), r"vocabularies, transforms or rating range"),
    ]:
        (tiny_copy / "config.json").write_text(original)
        _rewrite_config(tiny_copy, change)
        with pytest.raises(PresetError, match=message):
            from_preset(tiny_copy)


def _with_a_nan_weight(source: Path, target: Path) -> str:
    """A copy of the learner file ``source`` with one weight set to NaN; the weight's path."""
    import keras

    learner = keras.saving.load_model(source)
    weight = next(w for w in learner.weights if "kernel" in w.path)
    values = np.array(weight.numpy())
    values.flat[0] = np.nan
    weight.assign(values)
    learner.save(target)
    return weight.path


def test_learner_files_that_are_empty_corrupt_or_not_finite_are_refused_naming_the_file(tiny_copy, tmp_path):
    from tfmetarec.presets import PresetError, from_preset
    from tfmetarec.run_folder import load_keras

    empty, corrupt = tmp_path / "empty.keras", tmp_path / "corrupt.keras"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match=r"empty.keras is empty \(an interrupted save\?\)"):
        load_keras(empty)
    with pytest.raises(ValueError, match=r"corrupt.keras could not be loaded as a learner"):
        load_keras(corrupt)
    with pytest.raises(FileNotFoundError, match=r"missing.keras does not exist"):
        load_keras(tmp_path / "missing.keras")

    nan = tmp_path / "nan.keras"
    name = _with_a_nan_weight(tiny_copy / "learner.keras", nan)
    with pytest.raises(ValueError, match=rf"nan.keras holds non-finite weights \(NaN or inf\) in {name}"):
        load_keras(nan)
    shutil.copy(nan, tiny_copy / "learner.keras")
    _re_sign(tiny_copy, "learner.keras")
    with pytest.raises(PresetError, match=rf"learner.keras holds non-finite weights .* in {name}"):
        from_preset(tiny_copy)


def test_a_run_on_another_learners_checkpoint_or_on_other_data_is_refused(tmp_path, capsys):
    from tfmetarec.cli import main
    from tfmetarec.data import load_dataset
    from tfmetarec.experiment import load_run
    from tfmetarec.run_folder import RunFolderError

    args = ["train", "--pretrain-steps", "2", "--embedding-dim", "4", "--hidden-units", "8", "--inner-steps", "1",
            "--batch-size", "8", "--quiet", "--no-xla", "--checkpoint-every", "1", "--workdir", str(tmp_path)]
    assert main([*args, "--meta-steps", "2"]) == 0
    run = load_run(tmp_path)
    assert run.learner.model.encoder_digest == run.prepared.encoder.digest() != ""
    with pytest.raises(RunFolderError, match="was trained on data that encoded differently"):
        load_run(tmp_path, data=load_dataset("synthetic", seed=1))
    # the baseline's (pretraining) checkpoints copied where MAML's belong: refused, not resumed
    checkpoints = tmp_path / "checkpoints"
    assert {p.name for p in checkpoints.iterdir()} == {"learner", "baseline"}
    shutil.rmtree(checkpoints / "learner")
    shutil.copytree(checkpoints / "baseline", checkpoints / "learner")
    capsys.readouterr()
    assert main([*args, "--meta-steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"Checkpoint \S+ (was written for another run: it was written by|cannot be restored into this "
                     r"MAML)", err), err


def test_meta_training_that_diverges_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from tfmetarec.cli import main

    workdir = tmp_path / "run"
    args = ["train", "--meta-steps", "40", "--pretrain-steps", "0", "--embedding-dim", "4", "--hidden-units", "8",
            "--inner-steps", "1", "--batch-size", "8", "--quiet", "--no-xla", "--outer-lr", "1e6",
            "--checkpoint-every", "1", "--workdir", str(workdir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Meta-training diverged at step" in err and "Traceback" not in err, err
    assert not (workdir / "learner.keras").exists(), "a diverged run saves no learner"
    kept = sorted((workdir / "checkpoints" / "learner").glob("ckpt-*.index"))
    assert kept, "the last good checkpoint stays"


# -- named: cases whose fixture another file builds ----------------------------------------------------
NAMED = {
    "tests/export/test_serving.py": [
        "test_bad_values_are_refused_by_the_graph_and_the_client",  # masks, NaN/range ratings, limits
        "test_bad_shapes_and_types_are_refused",  # missing/extra inputs, rank, dtypes, int64 range, no users
        "test_a_signature_called_with_a_wrong_rank_names_the_input",  # rank-3 ratings through TF2
        "test_states_that_are_not_this_models_are_refused",  # another user, a changed value, forged tag
    ],
    "tests/export/test_export_recipe.py": [
        "test_recommend_prints_the_top_items_through_the_export",  # ratings off the scale, -k beyond the catalogue
    ],
    "tests/learners/test_loop.py": [
        "test_checkpoints_hold_the_stream_state_and_refuse_another_stream",  # another learner's checkpoint
    ],
    "tests/data/test_data_movielens.py": [
        "test_a_malformed_side_file_names_its_file_and_line",
        "test_100k_malformed_ratings",
        "test_text_re_saved_as_utf8_reads_right_and_empty_ratings_are_refused",
    ],
    "tests/data/test_published_split.py": [
        "test_malformed_split_files_fail_with_file_and_line",
        "test_inconsistent_splits_are_refused",
    ],
    "tests/presets/test_presets.py": [
        "test_tampered_truncated_missing_and_corrupt_files_are_refused",
    ],
}


def test_the_named_cases_are_still_tested_where_the_catalogue_says():
    for path, names in NAMED.items():
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        missing = [n for n in names if n not in defined]
        assert not missing, f"{path} no longer has {missing}: move the case back into the catalogue"

