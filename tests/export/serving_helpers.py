"""A small trained world for the serving tests, random raw requests, and the eager answer."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from tfmetarec import learners, models
from tfmetarec.data import FeatureEncoder, InteractionData, SplitConfig, cold_start_split, make_synthetic
from tfmetarec.export import Buckets
from tfmetarec.learners import MetaTrainer
from tfmetarec.tasks.samplers import EpisodeSampler
from tfmetarec.types import ITEM_ID, MASK, RATING, USER_FIELDS, USER_ID

BUCKETS = Buckets(users=(1, 4), support=(8, 16), query=(8, 32))
ONNX_BUCKETS = Buckets(users=(1,), support=(8, 16), query=(8, 32))
FIELDS = ("gender", "age", "occupation", "zip")
UNKNOWN_ITEM = 987_654


def world(vectors: bool = False):
    """Small synthetic data; with ``vectors`` its items also carry a vector field (every fifth item
    without a vector)."""
    data = make_synthetic(num_users=120, num_items=90, seed=5, vector_dim=6 if vectors else 0)
    if vectors:
        items = data.items.copy()
        items.loc[::5, "vector"] = None
        data = InteractionData(data.name, data.ratings, data.users, items)
    split = cold_start_split(data, SplitConfig(seed=5))
    encoder = FeatureEncoder().fit(data, train_users=split.existing_users, train_items=split.existing_items)
    return data, split, encoder, encoder.transform(data)


def trained(world, learner: str = "maml", model: str = "melu", steps: int = 20, perturb: float = 0.0, **options):
    """A small learner meta-trained for a few steps (so no weight is at its initial value); with
    ``perturb``, every trainable weight moved by that much Gaussian noise instead of meta-training
    (no train step to trace: what the export parity tests need, in a fraction of the time)."""
    data, split, encoder, encoded = world
    cls = models.get(model)
    sizes = {"embedding_dim": 4, "seed": 0, **({"hidden_units": (8,)} if "hidden_units" in cls.settings() else {})}
    m = cls.from_spec(encoded.spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids,
                      item_vectors=encoded.item_vectors, **sizes)
    defaults = {"maml": dict(inner_steps=2, inner_lr=0.1), "task_encoder": dict(hidden_dim=6, seed=1),
                "prototype": dict(hidden_dim=6, seed=1), "matching": dict(hidden_dim=6, seed=1)}
    built = learners.create(learner, m, **{**defaults.get(learner, {}), **options})
    if built.needs_training_ratings:
        rated = split.meta_train
        built.fit_statistics(encoded.item_vocab_ids(rated["item"]), rated["rating"].to_numpy())
    if perturb:
        rng = np.random.default_rng(0)
        built(next(EpisodeSampler(encoded, split.meta_train, batch_size=2, query_size=2, seed=0).iterate()))  # built
        for v in built.trainable_variables:
            v.assign(v.numpy() + perturb * rng.standard_normal(v.shape).astype(np.asarray(v.numpy()).dtype))
    elif built.meta_variables() and steps:
        sampler = EpisodeSampler(encoded, split.meta_train, batch_size=8, query_size=5, max_support=16, seed=0)
        MetaTrainer(built, keras.optimizers.Adam(1e-2), jit_compile=False).fit(sampler, steps, verbose=0)
    return built


def random_request(world, rng: np.random.Generator, users: int, support: int, query: int | None,
                   garbage: bool = True) -> dict[str, np.ndarray]:
    """A valid raw request: known and unknown users, field values and items; ragged supports
    (mask) whose padded rows hold garbage (NaN, huge or negative ratings, random IDs)."""
    data, split, encoder, encoded = world
    pool = data.users.sample(users, random_state=int(rng.integers(1 << 30)), replace=True).reset_index(drop=True)
    request = {"user_id": pool["user"].to_numpy(np.int64).copy()}
    request["user_id"][rng.random(users) < 0.3] = 10_000_000  # an unknown (new) user
    for f in FIELDS:
        values = pool[f].astype(str).to_numpy(dtype=object)
        values[rng.random(users) < 0.2] = {"age": "", "zip": "X1", "gender": "?", "occupation": "astronaut"}[f]
        request[f"user_{f}"] = values
    items = data.items["item"].to_numpy(np.int64)
    pick = lambda shape: np.where(rng.random(shape) < 0.1, UNKNOWN_ITEM, rng.choice(items, shape))  # noqa: E731
    if support is not None:
        lengths = rng.integers(0, support + 1, users)
        mask = (np.arange(support)[None, :] < lengths[:, None]).astype(np.float32)
        rating = rng.integers(1, 6, (users, support)).astype(np.float32)
        if garbage:
            junk = rng.choice([np.nan, 1e9, -50.0, np.inf], (users, support))
            rating = np.where(mask > 0, rating, junk).astype(np.float32)
        request.update(support_item_id=pick((users, support)), support_rating=rating, support_mask=mask)
    if query is not None:
        request["query_item_id"] = pick((users, query))
    return request


def encode(world, request: dict) -> tuple[dict, dict | None, dict | None]:
    """The request as the model's indices, by the encoder in numpy (the eager reference)."""
    data, split, encoder, encoded = world
    frame = pd.DataFrame({"user": request["user_id"], **{f: [v or None for v in request[f"user_{f}"]]
                                                          for f in FIELDS}})
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    ids, fields = encoder.encode_users(frame)
    index = pd.Index(encoded.item_raw_ids)

    def rows(raw):
        found = index.get_indexer(raw.reshape(-1)).reshape(raw.shape)
        return np.where(found < 0, 0, found).astype(np.int32)

    def part(items):
        shape = items.shape
        return {USER_ID: np.broadcast_to(ids[:, None], shape).astype(np.int32), ITEM_ID: rows(items),
                USER_FIELDS: np.broadcast_to(fields[:, None, :], (*shape, fields.shape[1])).astype(np.int32)}

    support = query = None
    if "support_item_id" in request:
        support = part(request["support_item_id"])
        mask = request["support_mask"]
        support[RATING] = np.where(mask > 0, request["support_rating"], 0.0).astype(np.float32)
        support[MASK] = mask
    if "query_item_id" in request:
        query = part(request["query_item_id"])
    return {"ids": ids, "fields": fields}, support, query


def eager_scores(world, learner, request: dict) -> np.ndarray:
    _, support, query = encode(world, request)
    return learner.score(learner.adapt(support), query).numpy()
