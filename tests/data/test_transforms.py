"""Each feature transform gives the same indices on its three paths: the encoder (numpy on a data
frame's values), the ONNX client (numpy on a request's strings) and the SavedModel (TensorFlow on
the same strings)."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmetarec.data.transforms import AGE_BUCKETS, AgeBucket, ListLookup, Lookup, YearBucket


def _strings(values) -> list[str]:
    """What a client sends: every value as text, '' for missing."""
    return ["" if v is None or (not isinstance(v, (list, str)) and pd.isna(v)) else str(v) for v in values]


def _three_paths(transform, frame_values, label="user_x"):
    encoder = transform.numpy(np.asarray(frame_values, dtype=object))
    texts = _strings(frame_values)
    client = transform.numpy(np.asarray(texts, dtype=object), label=label)
    graph = transform.tf(tf.constant(texts), label).numpy()
    np.testing.assert_array_equal(client, encoder)
    np.testing.assert_array_equal(graph, encoder)
    return encoder


def test_lookup_maps_known_values_and_everything_else_to_zero():
    t = Lookup(("F", "M", "artist", "3"))
    out = _three_paths(t, ["M", " F ", "X", "", None, "artist", 3, "3", "m"])
    assert out.tolist() == [2, 1, 0, 0, 0, 3, 4, 4, 0]
    assert t.vocab_size == 5 and t.labels()[:2] == ["<oov>", "F"]


def test_zip_prefix_keeps_leading_digits_only():
    t = Lookup(("10", "85"), prefix=2)
    out = _three_paths(t, ["85711", "T8H1N", "1", "", "10001", " 85000", None, 85711])
    assert out.tolist() == [2, 0, 0, 0, 1, 2, 0, 2]


def test_age_buckets_at_their_edges_and_missing_ages():
    t = AgeBucket()
    ages = [0, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 90, None]
    out = _three_paths(t, ages)
    assert out.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 0]
    assert AGE_BUCKETS == (18, 25, 35, 45, 50, 56) and t.vocab_size == 8
    # MovieLens 1M age codes land in their own buckets
    assert t.numpy(np.array([1, 18, 25, 35, 45, 50, 56])).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert t.numpy(pd.array([None, 18], dtype="Int64")).tolist() == [0, 2]


def test_year_buckets_clip_to_the_training_span():
    t = YearBucket(5, (1990, 2000))
    out = _three_paths(t, [1990, 1994, 1995, 2004, 1850, 2030, None], label="item_year")
    assert out.tolist() == [1, 1, 2, 3, 1, 3, 0]
    assert t.vocab_size == 4 and YearBucket(5, None).numpy(np.array([1999])).tolist() == [0]


def test_numeric_fields_refuse_text_in_a_request_on_both_faces():
    t = AgeBucket()
    assert t.numpy(np.array(["soon", "30"], dtype=object)).tolist() == [0, 3]  # a data file: missing
    with pytest.raises(ValueError, match=r"user_age must hold numbers \(or '' for missing\), got \['soon'\]"):
        t.numpy(np.array(["soon", "30"], dtype=object), label="user_age")
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_age must hold numbers"):
        t.tf(tf.constant(["soon", "30"]), "user_age")


def test_list_lookup_keeps_known_values_in_order_once():
    t = ListLookup(("Action", "Comedy", "Drama"), width=2)
    cells = [["Drama", "Comedy"], ["unknown", "Drama", "Drama", "Action"], [], ["Comedy"]]
    encoder = t.numpy(cells)
    assert encoder.tolist() == [[3, 2], [3, 1], [0, 0], [2, 0]]
    longest = max(len(c) for c in cells)
    padded = tf.constant([c + [""] * (longest - len(c)) for c in cells])
    np.testing.assert_array_equal(t.tf(padded).numpy(), encoder)
    np.testing.assert_array_equal(t.numpy([np.array(c + [""] * (longest - len(c))) for c in cells]), encoder)
    assert t.labels()[:2] == ["<pad>", "Action"]
