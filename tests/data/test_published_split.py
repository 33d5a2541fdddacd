"""Published splits: a generic file and MeLU's state files give the split, the tasks and the saved run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
from tfmetarec.data import DataFormatError, SplitConfig, cold_start_split, load_dataset
from tfmetarec.data.published import published_split, read_melu_split, read_split, read_split_file

from helpers import with_roles as _with_roles, write_melu_states

SEED = 0


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=SEED)


@pytest.fixture(scope="module")
def generic_file(data, tmp_path_factory):
    """A split file in the generic layout drawn from the synthetic data (meta-training rows without roles)."""
    split = cold_start_split(data, SplitConfig(seed=SEED))
    train = split.meta_train.assign(partition="train", role="")[["user", "item", "rating", "partition", "role"]]
    parts = [train] + [_with_roles(split.partitions[s], s) for s in ("user_cold", "item_cold", "user_item_cold")]
    path = tmp_path_factory.mktemp("split") / "published.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


def test_generic_file_gives_the_split_and_fixed_tasks(data, generic_file):
    from tfmetarec.experiment import prepare

    frame = read_split_file(generic_file)
    split = published_split(data, frame)
    assert set(frame.partition) == {"meta_train", "user_cold", "item_cold", "user_item_cold"}
    assert split.counts().loc["warm", "ratings"] == 0  # counts() works without warm rows
    config = ExperimentConfig(split=SplitConfig(seed=SEED))
    prepared = prepare(config, data, split=generic_file)
    tasks = prepared.scenarios["user_cold"]
    expected = frame[(frame.partition == "user_cold")]
    assert len(tasks) == expected.user.nunique()
    t = 3
    user = tasks.task_ids[t]
    rows = expected[expected.user == user]
    query_items = set(prepared.encoded.item_raw_ids[tasks.query.task(t)[1]].tolist())
    support_items = set(prepared.encoded.item_raw_ids[tasks.support.task(t)[1]].tolist())
    assert query_items == set(rows[rows.role == "query"].item)  # the file's query, not a random draw
    assert support_items == set(rows[rows.role == "support"].item)
    assert set(prepared.split.new_users) == set(frame[frame.partition.isin(["user_cold", "user_item_cold"])].user)


@pytest.fixture(scope="module")
def melu_folder(data, tmp_path_factory):
    """MeLU's four state files over the synthetic data (one warm user cut to 12 ratings)."""
    split = cold_start_split(data, SplitConfig(seed=SEED))
    warm = split.meta_train
    short_user = warm.user.iloc[0]
    warm = pd.concat([warm[warm.user != short_user], warm[warm.user == short_user].head(12)])
    folder = tmp_path_factory.mktemp("melu")
    write_melu_states(folder, {"warm_state": warm, "user_cold_state": split.partitions["user_cold"],
                         "item_cold_state": split.partitions["item_cold"],
                         "user_and_item_cold_state": split.partitions["user_item_cold"]})
    return folder, short_user


def test_melu_state_files_keep_13_to_100_and_query_the_last_10_shuffled(data, melu_folder):
    folder, short_user = melu_folder
    frame = read_melu_split(folder, seed=5)
    assert short_user not in set(frame[frame.partition == "meta_train"].user), "12 ratings: dropped"
    per_user = frame.groupby(["partition", "user"])
    assert (per_user["role"].apply(lambda r: (r == "query").sum()) == 10).all()
    sizes = per_user.size()
    assert sizes.between(13, 100).all()
    assert frame.equals(read_melu_split(folder, seed=5)), "seeded"
    other = read_melu_split(folder, seed=6)
    def queries(f):
        return set(map(tuple, f.loc[f.role == "query", ["user", "item"]].to_numpy().tolist()))

    assert queries(other) != queries(frame), "another seed, other queries"
    # the rows are the file's: the same (user, item, rating) triples whatever the seed
    key = ["partition", "user", "item", "rating"]
    pd.testing.assert_frame_equal(frame[key].sort_values(key, ignore_index=True),
                                  other[key].sort_values(key, ignore_index=True))
    # one state file alone reads that state
    alone = read_split(folder / "user_cold_state.json", SplitConfig(seed=5))
    assert set(alone.partition) == {"user_cold"}
    assert (alone.groupby("user")["role"].apply(lambda r: (r == "query").sum()) == 10).all()
    split = published_split(data, frame)
    assert len(split.meta_train) == (frame.partition == "meta_train").sum()


def test_malformed_split_files_fail_with_file_and_line(data, tmp_path, melu_folder):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating,partition,role\n1,2,4,train,\n1,3,abc,train,\n")
    with pytest.raises(DataFormatError, match=r"bad.csv line 3: rating 'abc' is not a number"):
        read_split_file(bad)
    bad.write_text("user,item,rating,partition,role\n1,2,4,test,query\n")
    with pytest.raises(DataFormatError, match=r"bad.csv line 2: partition 'test' is not one of"):
        read_split_file(bad)
    bad.write_text("user,item,rating,partition,role\n1,2,4,user_cold,\n")
    with pytest.raises(DataFormatError, match=r"line 2: role '' must be 'support' or 'query'"):
        read_split_file(bad)
    bad.write_text("user,item,rating\n1,2,4\n")
    with pytest.raises(DataFormatError, match=r"line 1: the header needs the columns"):
        read_split_file(bad)
    folder, _ = melu_folder
    broken = tmp_path / "melu"
    broken.mkdir()
    (broken / "user_cold_state.json").write_text((folder / "user_cold_state.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"user_cold_state_y.json is missing"):
        read_melu_split(broken)
    ratings = json.loads((folder / "user_cold_state_y.json").read_text())
    first = next(iter(ratings))
    ratings[first] = ratings[first][:-1]
    (broken / "user_cold_state_y.json").write_text(json.dumps(ratings))
    with pytest.raises(DataFormatError, match=rf"user {first} has \d+ ratings for \d+ items"):
        read_melu_split(broken)
    (broken / "user_cold_state_y.json").write_text("{1: 2")
    with pytest.raises(DataFormatError, match=r"user_cold_state_y.json line 1 column 2: not valid JSON"):
        read_melu_split(broken)


def test_inconsistent_splits_are_refused(data):
    split = cold_start_split(data, SplitConfig(seed=SEED))
    train = split.meta_train.assign(partition="meta_train", role="")
    cold = _with_roles(split.partitions["user_cold"], "user_cold")
    leak = cold.iloc[:1].assign(partition="meta_train", role="")
    leaked = r"new users \(of user_cold/user_item_cold\) \[\d+\] also appear in meta_train"
    with pytest.raises(DataFormatError, match=leaked):
        published_split(data, pd.concat([train, cold, leak]))
    unknown = cold.iloc[:1].assign(item=10**9)
    with pytest.raises(DataFormatError, match=r"item IDs \[1000000000\].*have no features"):
        published_split(data, pd.concat([train, cold, unknown]))


def test_a_published_split_trains_saves_and_reloads_through_the_cli(data, melu_folder, tmp_path, capsys):
    from tfmetarec.cli import main
    from tfmetarec.experiment import evaluate, load_run

    folder, _ = melu_folder
    workdir = tmp_path / "run"
    args = ["train", "--split-file", str(folder), "--fixed-tasks", "--meta-steps", "8", "--pretrain-steps", "4",
            "--embedding-dim", "4", "--hidden-units", "8", "--inner-steps", "1", "--batch-size", "8", "--no-xla",
            "--quiet", "--workdir", str(workdir)]
    assert main(args) == 0, capsys.readouterr().err
    assert (workdir / "split" / "published.csv.gz").exists()
    run = load_run(workdir)
    expected = read_melu_split(folder, seed=0)
    tasks = run.prepared.scenarios["item_cold"]
    assert len(tasks) == expected[expected.partition == "item_cold"].user.nunique()
    report = evaluate(run)
    assert set(report.scenario) == {"user_cold", "item_cold", "user_item_cold"}  # MeLU's files have no warm test
    assert report.MAE.notna().all()
    # the config records the split file; changing the file is refused when continuing
    assert json.loads((workdir / "config.json").read_text())["split_file"] == str(folder)
    items = json.loads((folder / "user_cold_state_y.json").read_text())
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in folder.iterdir():
        (changed / f.name).write_text(f.read_text())
    first = next(iter(items))  # one new user fewer: still ratings of the data, another split
    del items[first]
    (changed / "user_cold_state_y.json").write_text(json.dumps(items))
    states = json.loads((folder / "user_cold_state.json").read_text())
    del states[first]
    (changed / "user_cold_state.json").write_text(json.dumps(states))
    config = ExperimentConfig.load(workdir / "config.json")
    from tfmetarec.experiment import train
    from tfmetarec.run_folder import RunFolderError

    with pytest.raises(RunFolderError, match="trained on another split"):
        train(config, workdir, verbose=0, split=changed)


def test_fixed_tasks_need_roles(data, generic_file):
    from tfmetarec.experiment import build_learner, build_model, fit_learner, prepare

    config = ExperimentConfig(model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
                              learner=LearnerConfig(inner_steps=1),
                              train=TrainConfig(meta_steps=2, fixed_tasks=True, jit_compile=False))
    prepared = prepare(config, data, split=generic_file)  # its meta-training rows carry no role
    learner = build_learner(config, build_model(config, prepared.encoded), prepared)
    with pytest.raises(ValueError, match="meta-training rows have no role"):
        fit_learner(learner, prepared, 2)
