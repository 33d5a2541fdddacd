"""The data side of a run: which users train, validate and are evaluated, and the feature settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfmetarec.config import ExperimentConfig, FeatureConfig, SplitConfig, TrainConfig
from tfmetarec.data import make_synthetic
from tfmetarec.workflows.prepare import prepare
from tfmetarec.workflows.train import describe_split

DATA = make_synthetic(num_users=200, num_items=120, seed=3)


def test_counts_and_roles_say_who_trains_validates_and_is_evaluated(tmp_path):
    prepared = prepare(ExperimentConfig(), DATA)
    counts = prepared.counts()
    assert list(counts.index) == ["trains", "validation", "validation_items", "warm", "user_cold", "item_cold",
                                  "user_item_cold"]
    meta = prepared.split.meta_train
    assert counts.loc[["trains", "validation", "validation_items"], "ratings"].sum() == len(meta)
    assert counts.loc["validation", "users"] == round(0.1 * meta["user"].nunique())
    assert counts.loc["validation", "tasks"] == len(prepared.validation)
    roles = prepared.user_roles()
    assert not roles["user"].duplicated().any()
    assert set(prepared.validation.task_ids) <= set(roles.loc[roles.role == "validation", "user"])
    assert set(roles.loc[roles.role == "trains", "user"]) == set(prepared.train_ratings["user"])
    assert set(roles.loc[roles.role.isin(["user_cold", "user_item_cold"]), "user"]) == set(prepared.split.new_users)
    prepared.save_split(tmp_path)
    saved = pd.read_csv(tmp_path / "counts.csv", index_col="partition")
    assert saved.loc["trains", "users"] == counts.loc["trains", "users"]
    assert pd.read_csv(tmp_path / "users.csv").equals(roles)


def test_no_validation_users_trains_on_every_meta_training_user():
    with pytest.raises(ValueError, match="set train.finetune_lr as well"):
        ExperimentConfig(split=SplitConfig(validation_fraction=0.0))
    config = ExperimentConfig(split=SplitConfig(validation_fraction=0.0, validation_item_fraction=0.0),
                              train=TrainConfig(finetune_lr=0.05))
    prepared = prepare(config, DATA)
    assert len(prepared.validation) == 0 and len(prepared.train_ratings) == len(prepared.split.meta_train)
    assert prepared.validation_items is None and prepared.validation_sets() == {}
    assert "no validation task to score steps on, so each training keeps its last step" in describe_split(prepared)
    assert prepared.counts().loc["validation", "users"] == 0


def test_feature_settings_reach_the_encoder():
    five = prepare(ExperimentConfig(features=FeatureConfig(zip_prefix_len=5, drop_fields=("year",))), DATA)
    two = prepare(ExperimentConfig(), DATA)
    assert "year" not in [f.name for f in five.encoder.fields] and "year" in [f.name for f in two.encoder.fields]
    zips = DATA.users["zip"].astype(str)
    assert five.encoder.zip_prefix_len == 5
    assert len(five.encoder.vocabulary("user", "zip")) > len(two.encoder.vocabulary("user", "zip"))
    assert len(five.encoder.vocabulary("user", "zip")) <= zips.str[:5].nunique()
    assert np.array_equal(five.split.new_items, two.split.new_items)  # a dropped year still dates the items


def test_held_out_items_leave_meta_training_and_become_validation_tasks_with_new_items(tmp_path):
    config = ExperimentConfig(split=SplitConfig(validation_item_fraction=0.2))
    prepared = prepare(config, DATA)
    held, existing = prepared.held_items, prepared.split.existing_items
    assert len(held) == round(0.2 * len(existing)) and np.isin(held, existing).all()
    assert not prepared.train_ratings["item"].isin(held).any()
    assert not prepared.train_ratings["user"].isin(prepared.held_users).any()
    # the model meets them as new items: outside the ID vocabulary the encoder learned
    encoded = prepared.encoded
    assert (encoded.item_vocab_ids(held) == 0).all()
    assert (encoded.item_vocab_ids(np.setdiff1d(existing, held)) > 0).all()
    tasks = prepared.validation_items
    assert len(tasks) > 0
    assert set(tasks.task_ids) <= set(prepared.train_ratings["user"])
    new_rows = encoded.item_rows(held)
    for t in range(len(tasks)):  # the query rates held-out items only, the support the user's training ratings
        assert np.isin(tasks.query.task(t)[1], new_rows).all()
        assert not np.isin(tasks.support.task(t)[1], new_rows).any()
    counts = prepared.counts()
    assert list(counts.index[:3]) == ["trains", "validation", "validation_items"]
    assert counts.loc["validation_items", "tasks"] == len(tasks)
    meta = prepared.split.meta_train
    assert counts.loc["trains", "ratings"] + counts.loc["validation", "ratings"] + counts.loc[
        "validation_items", "ratings"] == len(meta)
    assert set(prepared.validation_sets()) == {"validation", "validation_items"}
    same = prepare(config, DATA)  # seeded
    assert np.array_equal(same.held_items, held)
    with pytest.raises(ValueError, match="validation_item_fraction must be <= 0.5"):
        SplitConfig(validation_item_fraction=0.6)
