"""benchmarks/melu_protocol.py on files shaped like MeLU's (MovieLens 1M, four state files and
movies_extrainfos.dat), made here from the synthetic generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.config import ExperimentConfig, SplitConfig
from tfmetarec.data import cold_start_split, load_movielens_1m, make_synthetic
from tfmetarec.run_folder import RunFolder

from helpers import write_melu_states

ROOT = Path(__file__).resolve().parent.parent
AGE_CODES = np.array([1, 18, 25, 35, 45, 50, 56])
RATES = ("G", "PG", "PG-13", "R")
IMDB_GENRES = ("Drama", "Comedy", "Biography", "Sci-Fi", "Film-Noir")


def _ml1m_and_melu_files(tmp: Path) -> tuple[Path, Path]:
    data = make_synthetic(num_users=150, num_items=80, seed=4)
    root, melu = tmp / "ml-1m", tmp / "melu"
    root.mkdir()
    r = data.ratings
    (root / "ratings.dat").write_text("\n".join(f"{u}::{i}::{int(x)}::{t}" for u, i, x, t in
                                                zip(r.user, r.item, r.rating, r.timestamp)) + "\n")
    u = data.users
    codes = AGE_CODES[np.searchsorted(AGE_CODES, u.age.to_numpy(), side="right") - 1]
    (root / "users.dat").write_text("\n".join(f"{a}::{g}::{c}::{k % 21}::{z}-1234" for k, (a, g, c, z) in
                                              enumerate(zip(u.user, u.gender, codes, u.zip))) + "\n", "latin-1")
    it = data.items
    (root / "movies.dat").write_text("\n".join(f"{i}::Film {i} ({y})::{'|'.join(g)}" for i, y, g in
                                               zip(it.item, it.year, it.genres)) + "\n", "latin-1")
    rng = np.random.default_rng(0)
    lines = []
    for i, y in zip(it.item, it.year):
        genres = ", ".join(rng.choice(IMDB_GENRES, 2, replace=False))
        directors = f"Director {i % 7} (co-director), Director {i % 5}"
        actors = ", ".join(f"Actor {a}" for a in rng.choice(30, 3, replace=False))
        lines.append(f"{i}::Film {i}::{y}::{RATES[i % 4]}::01 Jan {y}::{genres}::{directors}::Writer::{actors}"
                     f"::A plot.::http://poster")
    melu.mkdir()
    (melu / "movies_extrainfos.dat").write_text("\n".join(lines) + "\n", "utf-8")
    split = cold_start_split(load_movielens_1m(root), SplitConfig(new_item_year=1998, seed=2))
    write_melu_states(melu, {"warm_state": split.meta_train, "user_cold_state": split.partitions["user_cold"],
                             "item_cold_state": split.partitions["item_cold"],
                             "user_and_item_cold_state": split.partitions["user_item_cold"]})
    return root, melu


def _script():
    spec = importlib.util.spec_from_file_location("melu_protocol", ROOT / "benchmarks" / "melu_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_melu_protocol_runs_from_melus_files_with_every_setting(tmp_path, capsys):
    root, melu = _ml1m_and_melu_files(tmp_path)
    work = tmp_path / "run"
    code = _script().main(["--data-dir", str(root), "--melu-dir", str(melu), "--workdir", str(work), "--",
                           "--meta-steps", "4", "--pretrain-steps", "4", "--embedding-dim", "4", "--hidden-units", "8",
                           "--inner-steps", "1", "--no-xla", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("tfmetarec quickstart --dataset movielens-1m") and "--fixed-tasks" in out
    config = ExperimentConfig.load(work / "config.json")
    assert config.features.zip_prefix_len == 5 and config.split.validation_fraction == 0
    assert config.split.validation_item_fraction == 0 and config.train.select_every == 0
    assert config.train.fixed_tasks and config.split_file == str(melu)
    encoder = RunFolder(work).load_encoder()
    assert [f.name for f in encoder.fields] == ["gender", "age", "occupation", "zip", "genres", "rate", "director",
                                                "actors"]
    assert set(encoder.vocabulary("item", "genres")) <= set(IMDB_GENRES)  # MeLU's genres, not MovieLens'
    assert "Director 3" in encoder.vocabulary("item", "director")  # remarks in parentheses dropped
    assert all(len(z) == 5 for z in encoder.vocabulary("user", "zip"))
    counts = pd.read_csv(work / "split" / "counts.csv", index_col="partition")
    assert counts.loc["validation", "users"] == 0
    cold = json.loads((melu / "user_cold_state.json").read_text())
    kept = {int(u) for u, items in cold.items() if 13 <= len(items) <= 100}
    assert counts.loc["user_cold", "users"] == len(kept)
    report = (work / "report.md").read_text()
    assert all(f"| {s} | maml |" in report for s in ("user_cold", "item_cold", "user_item_cold"))
    assert counts.loc["warm", "tasks"] == 0  # MeLU's warm_state is the meta-training state
