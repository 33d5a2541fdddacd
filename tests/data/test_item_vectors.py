"""Item vectors: a vector field read from a file or a column, held beside the item table, projected
by the model, saved, added with new items and refused clearly when bad. (Every export of a model
with a vector field is checked in tests/export: their world carries one.)"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import FeatureEncoder, InteractionData, make_synthetic
from tfmetarec.data.vectors import VectorFileError, read_item_vectors
from tfmetarec.models import MeLU

DIM = 4


def _vectors(ids, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(ids), DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def world():
    """Synthetic data with item vectors from a file (every third item has none); items 1-70 train."""
    data = make_synthetic(num_users=80, num_items=90, seed=1)
    ids = data.items["item"].to_numpy()[data.items["item"].to_numpy() % 3 != 0]
    frame = pd.DataFrame({"item": ids, "vector": list(_vectors(ids))})
    data = data.with_item_vectors(frame)
    encoder = FeatureEncoder().fit(data, train_items=range(1, 71))
    return data, encoder, encoder.transform(data), frame


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".tsv", ".parquet"])
def test_every_file_format_reads_the_same_vectors(tmp_path, suffix):
    ids = np.array([3, 1, 7])
    matrix = _vectors(ids)
    path = tmp_path / f"v{suffix}"
    if suffix == ".npz":
        np.savez(path, item=ids, vectors=matrix)
    else:
        frame = pd.DataFrame(matrix, columns=[f"d{k}" for k in range(DIM)]).assign(item=ids)
        if suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False, float_format="%.9g")
    got = read_item_vectors(path)
    assert got["item"].tolist() == [3, 1, 7]
    np.testing.assert_allclose(np.stack(got["vector"]), matrix, rtol=1e-6)


@pytest.mark.parametrize("name, body, message", [
    ("bad.csv", "item,d0,d1\n1,0.1,1\n2,abc,2\n", r"bad.csv, line 3: column 'd0' holds 'abc', not a number"),
    ("nan.csv", "item,d0,d1\n1,0.1,1\n2,nan,2\n", r"nan.csv, line 3: column 'd0' holds 'nan'; vectors must be finite"),
    ("inf.tsv", "item\td0\n1\tinf\n", r"inf.tsv, line 2: column 'd0' holds 'inf'"),
    ("short.csv", "item,d0,d1\n1,0.1,1\n2,0.2\n", r"short.csv, line 3: column 'd1' holds '', not a number"),
    ("float_id.csv", "item,d0\n1.5,0.1\n", r"float_id.csv, line 2: item ID '1.5' is not an integer"),
    ("no_id.csv", "x,d0\n1,2\n", r"no_id.csv: needs a column 'item'"),
    ("dup.csv", "item,d0\n2,0.1\n2,0.3\n1,0.2\n", r"dup.csv: item IDs \[2\] appear more than once"),
    ("v.txt", "1 2 3\n", r"v.txt: unknown vector file format '.txt'"),
    ("latin.csv", b"item,d0\n1,\xe9\n", r"latin.csv: cannot be read as a CSV vector file"),
])
def test_a_bad_vector_file_names_the_file_and_row(tmp_path, name, body, message):
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(VectorFileError, match=message):
        read_item_vectors(path)


def test_bad_npz_files_and_vectors_the_data_does_not_know_are_refused(tmp_path, world):
    data = world[0]
    for name, arrays, message in [
        ("nan.npz", dict(item=np.array([1, 2]), vectors=np.array([[0.0, 1.0], [np.nan, 1.0]])),
         r"nan.npz, row 1: item 2 has NaN or infinite values"),
        ("rows.npz", dict(item=np.array([1, 2]), vectors=np.zeros((3, 2))), r"one row per ID \(2\), got float64 \(3, 2\)"),
        ("keys.npz", dict(ids=np.array([1])), r"needs arrays 'item' and 'vectors'; lacks \['item', 'vectors'\]"),
    ]:
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(VectorFileError, match=message):
            read_item_vectors(tmp_path / name)
    unknown = pd.DataFrame({"item": [1, 5000, 6000, 7000], "vector": list(np.ones((4, DIM), np.float32))})
    with pytest.raises(VectorFileError, match=r"3 item ID\(s\) are not items of the data, e.g. \[5000, 6000, 7000\]"):
        data.with_item_vectors(unknown)
    mixed = data.items.copy()
    mixed["vector"] = [np.ones(DIM if i != 4 else DIM + 1, np.float32) for i in mixed["item"]]
    with pytest.raises(ValueError, match=r"item 4 has a 5-dimensional vector; the others have 4"):
        InteractionData("mixed", data.ratings, data.users, mixed)


def test_the_encoder_and_the_model_hold_the_vectors_and_a_missing_one_is_a_learned_default(world, tmp_path):
    data, encoder, encoded, frame = world
    spec = next(f for f in encoded.spec.item_fields if f.name == "vectors")
    assert (spec.kind, spec.dim) == ("vector", DIM)
    vectors = encoded.item_vectors["vectors"]
    rows = encoded.item_rows(frame["item"])
    np.testing.assert_allclose(np.linalg.norm(vectors[rows], axis=1), 1.0, rtol=1e-5)  # l2_normalize
    without = encoded.item_rows([3, 6])
    assert not vectors[without].any() and not vectors[0].any()

    model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids,
                           item_vectors=encoded.item_vectors, embedding_dim=4, hidden_units=(8,), seed=0)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.3 * np.random.default_rng(0).normal(size=v.shape).astype("float32"))
    items = np.concatenate([rows[:3], without])[None].astype("int32")
    features = {"user_id": np.zeros_like(items), "user_fields": encoded.user_fields[[0] * items.shape[1]][None],
                "item_id": items}
    before = model(features).numpy()
    table = model.item_vector_table("vectors")
    table.assign(table.numpy() * 2.0 + 1.0)  # other vectors: the items that have one move, the others do not
    after = model(features).numpy()
    assert (np.abs(after[0, :3] - before[0, :3]) > 1e-4).all()
    np.testing.assert_allclose(after[0, 3:], before[0, 3:], rtol=1e-6)
    table.assign(vectors)

    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(again.item_vectors["vectors"], vectors)
    np.testing.assert_array_equal(again(features).numpy(), before)
    with pytest.raises(ValueError, match="name items by their table row"):
        model({**features, "item_fields": encoded.item_table[items]})


def test_items_added_with_vectors_score_like_the_same_items_present_at_training(world):
    data, encoder, encoded, frame = world
    n = encoded.spec.num_items
    options = dict(embedding_dim=4, hidden_units=(8,), seed=0)
    present = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids,
                             item_vectors=encoded.item_vectors, **options)
    added = MeLU.from_spec(encoded.spec, item_table=encoded.item_table[:n], item_raw_ids=encoded.item_raw_ids[:n],
                           item_vectors={k: v[:n] for k, v in encoded.item_vectors.items()}, **options)
    added.set_weights(present.get_weights())
    new = data.items[data.items["item"] > 70]
    with pytest.raises(ValueError, match=r"row\(s\) have a 'vectors' vector but no vectors were given"):
        added.add_items(encoder.encode_items(new), new["item"].to_numpy())
    wrong = {"vectors": np.ones((len(new), DIM + 1), np.float32)}
    with pytest.raises(ValueError, match=rf"'vectors' vectors must be \[{len(new)}, {DIM}\]"):
        added.add_items(encoder.encode_items(new), new["item"].to_numpy(), wrong)
    assert added.num_table_items == n  # nothing changed
    rows = added.add_items(encoder.encode_items(new), new["item"].to_numpy(), encoder.item_vectors(new))
    np.testing.assert_array_equal(added.item_vectors["vectors"], present.item_vectors["vectors"])
    features = {"user_id": np.zeros((1, len(rows)), "int32"), "item_id": rows[None],
                "user_fields": encoded.user_fields[[1] * len(rows)][None]}
    np.testing.assert_allclose(added(features).numpy(), present(features).numpy(), rtol=1e-6)
