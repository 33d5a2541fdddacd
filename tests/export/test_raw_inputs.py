"""Raw IDs in: the in-graph lookups built from the encoder agree with the encoder."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmetarec import models
from tfmetarec.data import FeatureEncoder, InteractionData, make_synthetic
from tfmetarec.export.raw_inputs import RawInputs


@pytest.fixture(scope="module")
def world():
    data = make_synthetic(num_users=80, num_items=60, seed=4)
    items = data.items.assign(directors=[[f"d{i % 7}", f"d{(i * 3) % 11}"] for i in range(len(data.items))])
    data = InteractionData("synthetic", data.ratings, data.users, items)
    encoder = FeatureEncoder().fit(data, train_users=range(1, 60), train_items=range(1, 45))
    encoded = encoder.transform(data)
    raw = RawInputs(encoder, encoded.item_raw_ids)
    return data, encoder, encoded, raw


def test_raw_ids_and_values_map_like_the_encoder_and_unseen_ones_to_zero(world):
    data, encoder, encoded, raw = world
    users = data.users.sample(40, random_state=0)
    known = encoder.vocabulary("user", "occupation")[0]
    strange = pd.DataFrame({"user": [999_999, 0], "gender": ["X", ""], "age": [None, 200],
                            "occupation": ["astronaut", f" {known} "], "zip": ["ABCDE", "1"]})
    frame = pd.concat([users, strange], ignore_index=True)
    ids, fields = encoder.encode_users(frame)
    values = {c: tf.constant(["" if pd.isna(v) else str(v) for v in frame[c]]) for c in ("gender", "age",
                                                                                            "occupation", "zip")}
    np.testing.assert_array_equal(raw.user_ids(tf.constant(frame["user"].to_numpy())).numpy(), ids)
    np.testing.assert_array_equal(raw.user_field_indices(values).numpy(), fields)
    assert ids[-2:].tolist() == [0, 0]
    assert fields[-2].tolist() == [0, 0, 0, 0]  # unknown gender and occupation, missing age, bad zip
    assert fields[-1, 1] == 7 and fields[-1, 2] == 1  # age 200 is 56+; spaces around a known value
    items = np.array([1, 50, 59, 123_456, -5])
    np.testing.assert_array_equal(raw.item_rows(tf.constant(items)).numpy()[:3], encoded.item_rows(items[:3]))
    assert raw.item_rows(tf.constant(items)).numpy()[3:].tolist() == [0, 0]


def test_item_content_in_a_request_encodes_like_the_encoder(world):
    data, encoder, encoded, raw = world
    frame = data.items.iloc[[3, 50, 59]].reset_index(drop=True)
    frame.at[1, "directors"] = ["unknown-director", "d2", "d2", "d5"]  # unseen value dropped, repeat kept once
    width = max(len(g) for g in frame["genres"])
    pad = lambda cells, n: [list(c) + [""] * (n - len(c)) for c in cells]  # noqa: E731
    values = {"year": tf.constant([str(y) for y in frame["year"]]),
              "genres": tf.constant(pad(frame["genres"], width)),
              "directors": tf.constant(pad(frame["directors"], 4))}
    np.testing.assert_array_equal(raw.item_field_indices(values).numpy(), encoder.encode_items(frame))
    with pytest.raises(tf.errors.InvalidArgumentError, match="item_year must hold numbers"):
        raw.item_field_indices({**values, "year": tf.constant(["1999", "soon", ""])})
    with pytest.raises(KeyError, match="Unknown item fields \\['studio'\\]"):
        raw.item_field_indices({"studio": tf.constant(["x"])})


def test_a_model_scores_raw_requests_like_encoded_ones(world):
    data, encoder, encoded, raw = world
    model = models.get("melu").from_spec(encoded.spec, item_table=encoded.item_table,
                                         item_raw_ids=encoded.item_raw_ids, embedding_dim=4, hidden_units=(8,),
                                         seed=0)
    users = data.users.iloc[[2, 70]]
    items = np.array([[5, 17, 52], [44, 45, 999]])
    feats = raw.features(tf.constant(users["user"].to_numpy()),
                         {c: tf.constant(users[c].astype(str).to_numpy()) for c in ("gender", "age", "occupation",
                                                                                       "zip")},
                         tf.constant(items))
    ids, fields = encoder.encode_users(users)
    rows = np.array([[encoded.item_rows([i])[0] if i in encoded.item_raw_ids else 0 for i in r] for r in items])
    encoded_feats = {"user_id": np.repeat(ids[:, None], 3, 1), "user_fields": np.repeat(fields[:, None], 3, 1),
                     "item_id": rows.astype("int32")}
    np.testing.assert_allclose(model(feats).numpy(), model(encoded_feats).numpy(), rtol=1e-6)
    assert rows[1, 2] == 0
