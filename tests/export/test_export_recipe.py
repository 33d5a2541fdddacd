"""`tfmetarec export` and the deployment recipe in export/: request examples fit the signatures."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmetarec.cli import main

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "export" / "requests"
TINY = ["--meta-steps", "10", "--pretrain-steps", "10", "--embedding-dim", "8", "--hidden-units", "16",
        "--inner-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny synthetic run (the data the request examples describe), exported by the CLI."""
    base = tmp_path_factory.mktemp("recipe")
    run, out = base / "run", base / "serving"
    assert main(["train", *TINY, "--workdir", str(run)]) == 0
    assert main(["export", "--workdir", str(run), "--out", str(out), "--onnx"]) == 0
    learner = keras.saving.load_model(run / "learner.keras")
    return learner, out / "tfmetarec" / "1", out / "onnx" / "tfmetarec" / "1", run, out


def _body(name):
    return json.loads((REQUESTS / f"{name}.json").read_text(encoding="utf-8"))


def _tensors(signature, inputs):
    specs = signature.structured_input_signature[1]
    return {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}


@pytest.mark.parametrize("name", ["adapt_and_score", "serving_default", "adapt"])
def test_request_examples_match_the_signature(served, name):
    _, saved, *_ = served
    body = _body(name)
    assert body["signature_name"] == name
    signature = tf.saved_model.load(str(saved)).signatures[name]
    specs = signature.structured_input_signature[1]
    assert set(body["inputs"]) == set(specs), "the example must give every input, and only those"
    for key, value in body["inputs"].items():
        array = np.asarray(value)
        assert array.ndim == specs[key].shape.rank, key
        assert specs[key].shape.is_compatible_with(array.shape), (key, array.shape, specs[key].shape)
        if specs[key].dtype.is_integer:
            assert np.issubdtype(array.dtype, np.integer), f"{key} must be written as integers"
    outputs = signature(**_tensors(signature, body["inputs"]))
    for value in outputs.values():
        assert np.isfinite(value.numpy()).all()
    if name != "adapt":
        tasks, query = np.asarray(body["inputs"]["query_user_id"]).shape
        assert outputs["scores"].shape == (tasks, query)


def test_cached_state_scores_like_adapt_and_score(served):
    learner, saved, *_ = served
    loaded = tf.saved_model.load(str(saved))
    body = _body("adapt_and_score")["inputs"]
    direct = loaded.signatures["adapt_and_score"](**_tensors(loaded.signatures["adapt_and_score"], body))["scores"]
    adapt = loaded.signatures["adapt"]
    state = adapt(**_tensors(adapt, {k: v for k, v in body.items() if k.startswith("support_")}))
    score = loaded.signatures["score_with_state"]
    query = _tensors(score, {k: v for k, v in body.items() if k.startswith("query_")})
    cached = score(**state, **query)["scores"]
    np.testing.assert_allclose(cached.numpy(), direct.numpy(), atol=1e-5)
    # and both equal the learner in the run, eagerly
    support = {k[len("support_"):]: tf.constant(v, dtype=tf.float32 if k.endswith(("rating", "mask", "multi")) else tf.int32)
               for k, v in body.items() if k.startswith("support_")}
    query_f = {k[len("query_"):]: tf.constant(v, dtype=tf.float32 if k.endswith("multi") else tf.int32)
               for k, v in body.items() if k.startswith("query_")}
    np.testing.assert_allclose(learner.score(learner.adapt(support), query_f).numpy(), direct.numpy(), atol=1e-5)


def test_onnx_client_answers_like_the_saved_model(served):
    _, saved, onnx_dir, *_ = served
    out = subprocess.run(
        [sys.executable, str(ROOT / "export" / "onnx_client.py"), str(onnx_dir / "adapt_and_score.onnx"),
         str(REQUESTS / "adapt_and_score.json")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    scores = np.asarray(json.loads(out.stdout.strip().splitlines()[-1])["outputs"]["scores"])
    loaded = tf.saved_model.load(str(saved)).signatures["adapt_and_score"]
    expected = loaded(**_tensors(loaded, _body("adapt_and_score")["inputs"]))["scores"].numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_onnx_client_refuses_a_bad_request(served, tmp_path):
    _, _, onnx_dir, *_ = served
    body = _body("adapt_and_score")
    body["inputs"]["support_rating"] = body["inputs"]["support_rating"][0][:1]  # wrong rank
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body))
    out = subprocess.run([sys.executable, str(ROOT / "export" / "onnx_client.py"),
                          str(onnx_dir / "adapt_and_score.onnx"), str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "support_rating" in out.stderr


def test_export_refuses_to_overwrite_and_needs_a_run(served, tmp_path, capsys):
    _, _, _, run, out = served
    assert main(["export", "--workdir", str(run), "--out", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["export", "--workdir", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no trained run" in capsys.readouterr().err
    assert main(["export", "--workdir", str(run), "--out", str(out), "--version", "2", "--no-xla"]) == 0
    assert (out / "tfmetarec" / "2" / "saved_model.pb").exists()
