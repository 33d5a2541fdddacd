"""The data side of a run: load the data, split it, fit the encoder, build the evaluation tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.config import ExperimentConfig
from tfmetarec.data import (
    ColdStartSplit,
    EncodedData,
    FeatureEncoder,
    InteractionData,
    cold_start_split,
    load_dataset,
    select_fields,
)
from tfmetarec.data.published import published_split, read_split
from tfmetarec.data.vectors import read_item_vectors
from tfmetarec.tasks.episode import TaskSet, build_tasks

COLD_SCENARIOS = ("user_cold", "item_cold", "user_item_cold")

SplitSource = ColdStartSplit | pd.DataFrame | str | os.PathLike


@dataclass
class Prepared:
    """The data side of an experiment: split, encoded features and evaluation tasks."""

    config: ExperimentConfig
    data: InteractionData
    split: ColdStartSplit
    encoder: FeatureEncoder
    encoded: EncodedData
    train_ratings: pd.DataFrame
    validation: TaskSet
    scenarios: dict[str, TaskSet]
    validation_items: TaskSet | None = None
    """Tasks whose queries rate the held-out *pseudo-new* items (``split.validation_item_fraction``):
    meta-training users, their training ratings as support; None when no item is held out."""
    held_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The existing items held out of meta-training as pseudo-new items."""
    held_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The meta-training users held out as validation users."""

    def validation_sets(self) -> dict[str, TaskSet]:
        """The non-empty validation task sets: ``validation`` (held-out users) and
        ``validation_items`` (pseudo-new items), what a checkpoint is chosen on."""
        sets = {"validation": self.validation, "validation_items": self.validation_items}
        return {k: v for k, v in sets.items() if v is not None and len(v)}

    def counts(self) -> pd.DataFrame:
        """Distinct users, items and ratings of each part of the run, and its tasks: ``trains``
        (the ratings meta-training uses), ``validation`` (held-out meta-training users),
        ``validation_items`` (the other users' ratings of the held-out pseudo-new items, when
        some are held out), then the four scenarios (``tasks``: those with enough support to be
        evaluated)."""
        meta = self.split.meta_train
        by_held_user = meta["user"].isin(self.held_users)
        frames = {"trains": self.train_ratings, "validation": meta[by_held_user]}
        tasks = {"trains": np.nan, "validation": len(self.validation)}
        if self.validation_items is not None:
            frames["validation_items"] = meta[meta["item"].isin(self.held_items) & ~by_held_user]
            tasks["validation_items"] = len(self.validation_items)
        frames.update({s: self.split.partitions[s] for s in self.scenarios})
        tasks.update({s: len(t) for s, t in self.scenarios.items()})
        rows = {k: (f["user"].nunique(), f["item"].nunique(), len(f), tasks[k]) for k, f in frames.items()}
        out = pd.DataFrame.from_dict(rows, orient="index", columns=["users", "items", "ratings", "tasks"])
        out["tasks"] = out["tasks"].astype("Int64")
        return out

    def save_split(self, directory: str | os.PathLike) -> None:
        """Write the split (:meth:`ColdStartSplit.save`), with ``counts.csv`` as :meth:`counts` says
        and ``users.csv`` (each user's role, :meth:`user_roles`)."""
        out = Path(directory)
        self.split.save(out)
        self.counts().to_csv(out / "counts.csv", index_label="partition")
        self.user_roles().to_csv(out / "users.csv", index=False)

    def user_roles(self) -> pd.DataFrame:
        """Every user of the split and its role: ``trains``, ``validation``, ``validation_items``
        (a user who rated only held-out items), ``user_cold`` or ``user_item_cold`` (new users),
        sorted by user."""
        trains = np.unique(self.train_ratings["user"])
        roles = [pd.DataFrame({"user": trains, "role": "trains"}),
                 pd.DataFrame({"user": np.unique(self.held_users), "role": "validation"})]
        only_held_items = np.setdiff1d(np.unique(self.split.meta_train["user"]), np.union1d(trains, self.held_users))
        if len(only_held_items):  # every rating of theirs is of a held-out item
            roles.append(pd.DataFrame({"user": only_held_items, "role": "validation_items"}))
        for scenario in ("user_cold", "user_item_cold"):
            users = np.setdiff1d(np.unique(self.split.partitions[scenario]["user"]),
                                 np.concatenate([r["user"].to_numpy() for r in roles]))
            roles.append(pd.DataFrame({"user": users, "role": scenario}))
        return pd.concat(roles, ignore_index=True).sort_values("user", ignore_index=True)


def load_data(config: ExperimentConfig) -> InteractionData:
    """The experiment's dataset (the synthetic one is seeded by the run seed; an item side file read
    as ``config.features`` says)."""
    fc = config.features
    if config.dataset == "synthetic":
        data = load_dataset("synthetic", seed=config.train.seed)
    elif config.item_side_file is not None:
        data = load_dataset(config.dataset, config.data_dir, item_side_file=config.item_side_file,
                            list_columns=fc.list_columns, list_separator=fc.list_separator)
    else:
        data = load_dataset(config.dataset, config.data_dir)
    if fc.item_vectors is not None:
        data = data.with_item_vectors(read_item_vectors(fc.item_vectors), normalize=fc.normalize_vectors,
                                      what=fc.item_vectors)
    return data


def feature_encoder(config: ExperimentConfig) -> FeatureEncoder:
    """An unfitted encoder with the run's feature settings."""
    fc = config.features
    return FeatureEncoder(year_bucket_size=fc.year_bucket_size, zip_prefix_len=fc.zip_prefix_len,
                          min_tag_items=fc.min_tag_items)


def resolve_split(config: ExperimentConfig, data: InteractionData, split: SplitSource | None = None) -> ColdStartSplit:
    """The run's split: ``split`` when given (a :class:`ColdStartSplit`, a frame in the
    published layout, or a split file / MeLU folder), else ``config.split_file``, else one
    drawn by :func:`cold_start_split`."""
    if isinstance(split, ColdStartSplit):
        return split
    if isinstance(split, pd.DataFrame):
        return published_split(data, split, config.split)
    source = split if split is not None else config.split_file
    if source is not None:
        return published_split(data, read_split(source, config.split), config.split, source=os.fspath(source))
    return cold_start_split(data, config.split)


def _published_tasks(config: ExperimentConfig, encoded: EncodedData, split: ColdStartSplit, is_held: pd.Series,
                     common: dict) -> tuple[TaskSet, dict[str, TaskSet]]:
    """Validation and scenario tasks of a published split, keeping its support/query roles."""
    if config.task_key != "user":
        raise ValueError("A published split fixes each user's support and query; it needs task_key='user'.")
    fixed = {**{k: common[k] for k in ("min_support", "max_support", "seed")}, "fixed": True}
    held = split.meta_train[is_held]
    if (held["role"] != "").all():
        validation = build_tasks(encoded, held, name="validation", **fixed)
    else:  # meta-training rows without roles: draw validation queries as the MeLU protocol does
        validation = build_tasks(encoded, held.drop(columns="role"), name="validation", **common)
    scenarios = {"warm": build_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train,
                                           name="warm", **fixed)}
    for name in COLD_SCENARIOS:
        scenarios[name] = build_tasks(encoded, split.partitions[name], name=name, **fixed)
    return validation, scenarios


def prepare(config: ExperimentConfig, data: InteractionData | None = None,
            split: SplitSource | None = None) -> Prepared:
    """Split the data, fit the encoders on the meta-training side, build eval tasks
    (one per user, or one per item with ``config.task_key == "item"``).

    The fields ``config.features`` keeps describe the data (also when ``data`` is given).
    ``split`` (or ``config.split_file``) gives a published split instead of drawing one
    (see :func:`resolve_split`); its tasks keep their given support and query.
    A seeded share of the meta-training users (``config.split.validation_fraction``, a tenth by
    default; none at 0) is held out as *validation* tasks (they choose the fine-tuning
    baseline's step size). A seeded share of the existing items
    (``config.split.validation_item_fraction``, a tenth by default; none at 0) is held out as *pseudo-new*
    items: no meta-training rating touches them, the encoder's vocabularies do not see them, and
    the other users' ratings of them are the queries of ``validation_items`` tasks. What is
    left is the training ratings.
    """
    data = data if data is not None else load_data(config)
    data = select_fields(data, config.features.keep_fields, config.features.drop_fields)
    split = resolve_split(config, data, split)
    sc = config.split
    users = np.unique(split.meta_train["user"].to_numpy())
    rng = np.random.default_rng(sc.seed + 7)
    count = max(1, int(round(sc.validation_fraction * len(users)))) if sc.validation_fraction > 0 else 0
    held = rng.choice(users, count, replace=False)
    is_held = split.meta_train["user"].isin(held)
    held_items = held_out_items(split.existing_items, sc.validation_item_fraction, sc.seed)
    on_held_items = split.meta_train["item"].isin(held_items)
    train_ratings = split.meta_train[~is_held & ~on_held_items]
    encoder = feature_encoder(config).fit(
        data, train_users=np.unique(train_ratings["user"]), train_items=np.setdiff1d(split.existing_items, held_items)
    )
    encoded = encoder.transform(data)
    common = dict(query_size=sc.query_size, min_support=sc.min_support, max_support=config.train.max_support,
                  seed=sc.seed, task_key=config.task_key)
    validation_items = None
    if len(held_items):  # user tasks: a user's training ratings as support; item tasks: the item's own raters
        support = train_ratings if config.task_key == "user" else None
        validation_items = build_tasks(encoded, split.meta_train[on_held_items & ~is_held], support_ratings=support,
                                       name="validation_items", **common)
    if split.published is not None:
        validation, scenarios = _published_tasks(config, encoded, split, is_held, common)
        return Prepared(config, data, split, encoder, encoded, train_ratings, validation, scenarios, validation_items,
                        held_items, np.sort(held))
    validation = build_tasks(encoded, split.meta_train[is_held], name="validation", **common)
    scenarios = {
        "warm": build_tasks(encoded, split.partitions["warm"], support_ratings=split.meta_train, name="warm", **common)
    }
    for name in COLD_SCENARIOS:
        scenarios[name] = build_tasks(encoded, split.partitions[name], name=name, **common)
    return Prepared(config, data, split, encoder, encoded, train_ratings, validation, scenarios, validation_items,
                    held_items, np.sort(held))


def held_out_items(existing_items: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded share ``fraction`` of the existing items (sorted; none at 0): the pseudo-new items."""
    existing = np.asarray(existing_items, np.int64)
    count = int(round(fraction * len(existing))) if fraction > 0 else 0
    if count == 0:
        return np.zeros(0, np.int64)
    return np.sort(np.random.default_rng(seed + 11).choice(existing, count, replace=False))


__all__ = ["COLD_SCENARIOS", "Prepared", "SplitSource", "feature_encoder", "held_out_items", "load_data", "prepare",
           "resolve_split"]
