"""Presets: committed checkpoints reproduce their cards; checksums, URLs and errors; fine-tuning transfers."""

import dataclasses
import http.server
import shutil
import sys
import threading
from functools import partial

import numpy as np
import pandas as pd
import pytest

import tfmetarec
from tfmetarec import experiment
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, SplitConfig, TrainConfig
from tfmetarec.data import InteractionData, load_dataset
from tfmetarec.data.paths import movielens_100k_dir
from tfmetarec.evaluation.protocol import evaluate_scenarios
from tfmetarec.presets import (
    PresetError,
    available_presets,
    finetune,
    from_preset,
    preset_metrics,
    presets_dir,
    save_to_preset,
)

CARD_METRICS = ["MAE", "RMSE", "nDCG@3"]
TOLERANCE = 2e-3  # evaluation is deterministic; this leaves room for float differences across CPUs


def _card(preset) -> pd.DataFrame:
    return preset.metrics.set_index("scenario")[CARD_METRICS]


def test_committed_presets_are_registered():
    assert {"tiny-synthetic", "melu-maml-ml100k", "melu-task-encoder-ml100k"} <= set(available_presets())
    for name in available_presets():
        size = sum(f.stat().st_size for f in (presets_dir() / name).iterdir())
        assert size < 5 * 2**20, f"{name} is {size} bytes; presets stay small"


def test_tiny_preset_reproduces_its_model_card():
    preset = from_preset("tiny-synthetic")
    got = preset_metrics(preset).set_index("scenario")[CARD_METRICS]
    card = _card(preset)
    assert len(card) == 4
    np.testing.assert_allclose(got.loc[card.index].to_numpy(), card.to_numpy(), atol=TOLERANCE)
    assert "user_cold" in (preset.path / "README.md").read_text()


@pytest.mark.parametrize("name", ["melu-maml-ml100k", "melu-task-encoder-ml100k"])
def test_movielens_presets_reproduce_their_model_cards(name):
    if not (movielens_100k_dir() / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {movielens_100k_dir()} (set TFMETAREC_DATA_DIR)")
    preset = from_preset(name)
    assert preset.config.dataset == "movielens-100k"
    got = preset_metrics(preset).set_index("scenario")[CARD_METRICS]
    card = _card(preset)
    np.testing.assert_allclose(got.loc[card.index].to_numpy(), card.to_numpy(), atol=TOLERANCE)


@pytest.fixture
def tiny_copy(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(presets_dir() / "tiny-synthetic", folder)
    return folder


def test_tampered_truncated_missing_and_corrupt_files_are_refused(tiny_copy):
    weights = tiny_copy / "learner.keras"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PresetError, match=r"learner.keras fails its sha256 check"):
        from_preset(tiny_copy)
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(PresetError, match=r"learner.keras has \d+ bytes.*truncated"):
        from_preset(tiny_copy)
    weights.unlink()
    with pytest.raises(PresetError, match="learner.keras is missing"):
        from_preset(tiny_copy)
    (tiny_copy / "metadata.json").write_text("{not json")
    with pytest.raises(PresetError, match="metadata.json is corrupt"):
        from_preset(tiny_copy)


def test_a_preset_of_the_old_format_is_refused_with_how_to_remake_it(tiny_copy):
    import json

    meta = json.loads((tiny_copy / "metadata.json").read_text())
    meta["format"] = 1  # presets from before per-field embeddings and the item table
    (tiny_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PresetError, match=r"preset format 1, this library reads format 3.*make_presets.py"):
        from_preset(tiny_copy)


def test_unknown_names_and_plain_http_are_refused(tmp_path):
    with pytest.raises(PresetError, match="No preset 'no-such-preset'"):
        from_preset("no-such-preset")
    with pytest.raises(PresetError, match="Refusing plain http"):
        from_preset("http://example.com/preset", cache_dir=tmp_path)


def test_hub_handle_without_the_hub_client_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(PresetError, match="needs huggingface_hub"):
        from_preset("hf://someone/some-preset", cache_dir=tmp_path)


def test_loads_over_http_and_verifies_the_download(tmp_path, tiny_copy):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_copy.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tiny"
        remote = from_preset(url, cache_dir=tmp_path / "cache")
        local = from_preset(tiny_copy)
        spec = local.encoder.spec
        episode = _episode_for(spec, seed=1)
        np.testing.assert_allclose(remote.learner(episode).numpy(), local.learner(episode).numpy(), atol=1e-6)
        (tiny_copy / "README.md").write_text("changed on the server")
        with pytest.raises(PresetError, match="README.md"):
            from_preset(url, cache_dir=tmp_path / "cache")
        assert not list((tmp_path / "cache").glob(".download-*")), "a failed download leaves nothing behind"
    finally:
        server.shutdown()


def _episode_for(spec, seed: int, tasks: int = 3, rows: int = 5) -> dict:
    rng = np.random.default_rng(seed)

    def part():
        return {
            "user_id": np.zeros((tasks, rows), "int32"),
            "item_id": rng.integers(0, spec.num_items, (tasks, rows)).astype("int32"),
            "user_fields": np.stack([rng.integers(0, f.vocab_size, (tasks, rows)) for f in spec.user_fields],
                                    -1).astype("int32"),
            "rating": rng.integers(1, 6, (tasks, rows)).astype("float32"),
            "mask": np.ones((tasks, rows), "float32"),
        }

    return {"support": part(), "query": part(), "task_mask": np.ones(tasks, "float32")}


def test_save_and_load_round_trip_gives_identical_predictions(tmp_path):
    preset = from_preset("tiny-synthetic")
    copy = save_to_preset(preset.learner, preset.config, preset.encoder, tmp_path / "again", name="again",
                          description="a copy")
    again = from_preset(copy)
    episode = _episode_for(preset.encoder.spec, seed=2)
    np.testing.assert_array_equal(again.learner(episode).numpy(), preset.learner(episode).numpy())
    assert again.encoder.to_dict() == preset.encoder.to_dict()
    with pytest.raises(FileExistsError):
        save_to_preset(preset.learner, preset.config, preset.encoder, copy)
    assert tfmetarec.from_preset is from_preset


def _halves():
    """One synthetic world split into two disjoint user populations; the second relabelled
    (new user and item IDs, a subset of the items), as a user's own data would be."""
    data = load_dataset("synthetic", seed=0)
    users_a = data.users[data.users.user % 2 == 0]
    users_b = data.users[data.users.user % 2 == 1]
    a = InteractionData("synthetic", data.ratings[data.ratings.user.isin(users_a.user)].reset_index(drop=True),
                        users_a.reset_index(drop=True), data.items)
    keep = data.items[data.items.item % 5 != 0]
    ratings_b = data.ratings[data.ratings.user.isin(users_b.user) & data.ratings.item.isin(keep.item)].copy()
    ratings_b["user"] += 100_000
    ratings_b["item"] += 50_000
    users_b = users_b.assign(user=users_b.user + 100_000).reset_index(drop=True)
    items_b = keep.assign(item=keep.item + 50_000).reset_index(drop=True)
    return a, InteractionData("synthetic", ratings_b.reset_index(drop=True), users_b, items_b)


def test_finetuning_from_a_preset_beats_scratch_at_an_equal_budget(tmp_path):
    population_a, population_b = _halves()
    config = ExperimentConfig(
        dataset="synthetic",
        model=ModelConfig(embedding_dim=8, hidden_units=(16, 16)),
        learner=LearnerConfig(name="maml", inner_steps=2, inner_lr=0.05),
        # the source trains its full 500 steps on every item: this asserts transfer, with the margin
        # measured so (checkpoint choice is tests/evaluation/test_selection.py's)
        split=SplitConfig(validation_item_fraction=0.0),
        train=TrainConfig(meta_steps=500, pretrain_steps=0, seed=0, jit_compile=False, select_every=0),
    )
    prepared_a = experiment.prepare(config, population_a)
    source = experiment.build_learner(config, experiment.build_model(config, prepared_a.encoded), prepared_a)
    experiment.fit_learner(source, prepared_a, config.train.meta_steps)
    path = save_to_preset(source, config, prepared_a.encoder, tmp_path / "source", name="source")

    budget = dataclasses.replace(config, train=dataclasses.replace(config.train, meta_steps=40, pretrain_steps=0, seed=1))
    run, report = finetune(path, budget, data=population_b)
    assert {"decision_0_kernel", "decision_1_kernel", "decision_2_bias"} <= set(report.copied)
    hit, total = report.matched_rows["user_occupation_embedding"]
    assert 0 < hit <= total
    genres = len(prepared_a.encoder.vocabulary("item", "genres"))
    assert report.matched_rows["item_genres_embedding"] == (genres + 1, genres + 1)  # every genre and the padding row

    scratch = experiment.build_learner(budget, experiment.build_model(budget, run.prepared.encoded), run.prepared)
    experiment.fit_learner(scratch, run.prepared, budget.train.meta_steps)
    scores = evaluate_scenarios({"preset": run.learner, "scratch": scratch}, run.prepared.encoded,
                                {"user_cold": run.prepared.scenarios["user_cold"]}, jit_compile=False)
    mae = scores.set_index("method")["MAE"]
    assert mae["preset"] < mae["scratch"] - 0.03, mae.to_dict()


def test_finetune_cli_reports_the_transfer(tmp_path, capsys):
    from tfmetarec.cli import main

    args = ["finetune", "--from", "tiny-synthetic", "--dataset", "synthetic", "--seed", "3", "--meta-steps", "5",
            "--pretrain-steps", "5", "--workdir", str(tmp_path / "ft"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "copied whole" in out and "rows matched by value" in out
    assert (tmp_path / "ft" / "learner.keras").exists() and (tmp_path / "ft" / "transfer.txt").exists()
    assert main(["finetune", "--from", str(tmp_path / "nothing"), "--workdir", str(tmp_path / "x")]) == 2
    assert "No preset" in capsys.readouterr().err


def test_saving_a_preset_whose_parts_disagree_is_refused(tmp_path):
    preset = from_preset("tiny-synthetic")
    wrong = dataclasses.replace(preset.config, learner=LearnerConfig("task_encoder"))
    with pytest.raises(PresetError, match="Refusing to save a preset whose parts disagree: learner"):
        save_to_preset(preset.learner, wrong, preset.encoder, tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists() or not any((tmp_path / "wrong").iterdir())


def test_presets_ship_inside_the_wheel_and_load_after_install(tmp_path):
    """Build the wheel from a copy of the sources, install it into a folder, load a preset by name there."""
    import os
    import subprocess
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(root / name, src / name)
    for name in ("tfmetarec", "saved_models"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, timeout=180, capture_output=True)
    wheel = next((tmp_path / "dist").glob("tfmetarec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for preset in available_presets():
        for f in ("config.json", "learner.keras", "metadata.json", "README.md"):
            assert f"tfmetarec/saved_models/{preset}/{f}" in names, (preset, f)
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True, timeout=180,
                   capture_output=True)
    code = ("import tfmetarec, tfmetarec.presets as p; pr = p.from_preset('tiny-synthetic'); "
            "print(tfmetarec.__file__); print(pr.path); print(len(pr.metrics))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TFMETAREC_PRESETS_DIR")}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    module, path, rows = done.stdout.split()
    assert module.startswith(str(site)) and path.startswith(str(site / "tfmetarec" / "saved_models"))
    assert int(rows) == 4
