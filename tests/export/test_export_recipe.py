"""`tfmetarec export` / `recommend` and the deployment recipe in export/: the REST bodies and
gRPC requests fit the signatures and get the same answers as ONNX Runtime."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfmetarec.cli import main
from tfmetarec.export import RequestError, load_contract
from tfmetarec.export.clients import from_grpc, grpc_request, rest_body
from tfmetarec.export.onnx import OnnxRecommender

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "export" / "requests"
TINY = ["--meta-steps", "10", "--pretrain-steps", "10", "--embedding-dim", "8", "--hidden-units", "16",
        "--inner-steps", "2", "--quiet", "--no-xla"]
# the examples are one user with 3 ratings: one user and support bucket (every ONNX file is a
# conversion); the bucket flags' parsing of lists is tested on the query axis
BUCKETS = ["--user-buckets", "1", "--support-buckets", "8", "--query-buckets", "8,16"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny synthetic run (the data the request examples describe), exported by the CLI."""
    base = tmp_path_factory.mktemp("recipe")
    run, out = base / "run", base / "serving"
    assert main(["train", *TINY, "--workdir", str(run)]) == 0
    assert main(["export", "--workdir", str(run), "--out", str(out), "--onnx", "--top-k", "5", *BUCKETS]) == 0
    saved = out / "tfmetarec" / "1"
    return saved, tf.saved_model.load(str(saved)), out / "onnx" / "tfmetarec" / "1", run, out


def _body(name):
    return json.loads((REQUESTS / f"{name}.json").read_text(encoding="utf-8"))


def _call(loaded, name, inputs):
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}).items()}


@pytest.mark.parametrize("name", ["adapt_and_score", "serving_default", "adapt", "recommend"])
def test_request_examples_match_the_signature_and_onnx(served, name):
    saved, loaded, onnx_dir, *_ = served
    body = _body(name)
    assert body["signature_name"] == name
    specs = loaded.signatures[name].structured_input_signature[1]
    assert set(body["inputs"]) == set(specs), "the example must give every input, and only those"
    contract = load_contract(saved)
    assert rest_body(contract, name, body["inputs"], static=False) == body  # the builder writes exactly this body
    if name != "serving_default":  # by default, to the one-user signature of the support's bucket, padded
        fast = rest_body(contract, name, body["inputs"])
        assert fast["signature_name"] == f"{name}.t1.s8" and len(fast["inputs"]["support_item_id"][0]) == 8
        got = _call(loaded, fast["signature_name"], fast["inputs"])
        for key, value in _call(loaded, name, body["inputs"]).items():
            np.testing.assert_allclose(got[key], value, atol=1e-6, err_msg=key)
    outputs = _call(loaded, name, body["inputs"])
    onnx = OnnxRecommender(onnx_dir)(name, body["inputs"])
    for key, value in outputs.items():
        assert np.isfinite(value.astype("float64")).all()
        if key != "state_tag":  # each runtime signs its states with its own key
            np.testing.assert_allclose(onnx[key], value, atol=1e-5, err_msg=key)
    if name == "recommend":
        rated = set(body["inputs"]["support_item_id"][0])
        assert outputs["item_id"].shape == (1, 5) and not rated & set(outputs["item_id"][0].tolist())


def test_a_grpc_predict_request_fits_the_signature_and_answers_the_same(served):
    saved, loaded, *_ = served
    body = _body("adapt_and_score")
    request = grpc_request(load_contract(saved), "adapt_and_score", body["inputs"], model_name="tfmetarec",
                           static=False)
    assert request.model_spec.signature_name == "adapt_and_score"
    specs = loaded.signatures["adapt_and_score"].structured_input_signature[1]
    assert set(request.inputs) == set(specs)
    for name, proto in request.inputs.items():
        assert tf.dtypes.as_dtype(proto.dtype) == specs[name].dtype, name
        assert len(proto.tensor_shape.dim) == specs[name].shape.rank, name
    decoded = from_grpc(request)  # what the server decodes
    np.testing.assert_allclose(_call(loaded, "adapt_and_score", decoded)["scores"],
                               _call(loaded, "adapt_and_score", body["inputs"])["scores"], atol=1e-6)
    bad = dict(body["inputs"], support_rating=[[9.0, 3.0, 3.0]])
    with pytest.raises(RequestError, match="trained range"):
        grpc_request(load_contract(saved), "adapt_and_score", bad)


def test_the_clients_in_export_run_and_refuse_bad_requests(served, tmp_path):
    saved, loaded, onnx_dir, *_ = served
    out = subprocess.run([sys.executable, str(ROOT / "export" / "onnx_client.py"), str(onnx_dir),
                          str(REQUESTS / "adapt_and_score.json")], capture_output=True, text=True, check=True, cwd=ROOT)
    scores = np.asarray(json.loads(out.stdout.strip().splitlines()[-1])["outputs"]["scores"])
    np.testing.assert_allclose(scores, _call(loaded, "adapt_and_score", _body("adapt_and_score")["inputs"])["scores"],
                               atol=1e-5)
    body = _body("adapt_and_score")
    body["inputs"]["support_rating"] = body["inputs"]["support_rating"][0][:1]  # wrong rank
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body))
    out = subprocess.run([sys.executable, str(ROOT / "export" / "onnx_client.py"), str(onnx_dir), str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "support_rating" in out.stderr
    out = subprocess.run([sys.executable, str(ROOT / "export" / "grpc_client.py"), str(saved),
                          str(REQUESTS / "recommend.json")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and 'signature_name: "recommend.t1.s8"' in out.stdout, out.stderr[-2000:]


def test_export_refuses_to_overwrite_needs_a_run_and_takes_xla(served, tmp_path, capsys):
    saved, loaded, _, run, out = served
    assert main(["export", "--workdir", str(run), "--out", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["export", "--workdir", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no trained run" in capsys.readouterr().err
    assert main(["export", "--workdir", str(run), "--out", str(out), "--version", "2", "--xla",
                 "--no-static-signatures", *BUCKETS]) == 0
    assert load_contract(out / "tfmetarec" / "2").static_signatures == ()
    assert load_contract(saved).static_signatures  # the default export has them
    xla = tf.saved_model.load(str(out / "tfmetarec" / "2"))
    inputs = _body("adapt_and_score")["inputs"]
    np.testing.assert_allclose(_call(xla, "adapt_and_score", inputs)["scores"],
                               _call(loaded, "adapt_and_score", inputs)["scores"], atol=1e-5)
    with pytest.raises(SystemExit):
        main(["export", "--workdir", str(run), "--out", str(out), "--support-buckets", "16,8"])


def test_recommend_prints_the_top_items_through_the_export(served, capsys):
    *_, run, _ = served
    ask = ["recommend", "--workdir", str(run), "--ratings", "50:5,172:4,133:1", "--user", "gender=F,age=25"]
    assert main([*ask, "-k", "100000"]) == 0  # beyond the catalogue: all of it, rated items left out
    everything = [int(line.split()[1]) for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert len(everything) == len(set(everything)) > 4 and not {50, 172, 133} & set(everything)
    assert main([*ask, "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "item_id", "score"] and len(lines) == 5
    assert [int(line.split()[1]) for line in lines[1:]] == everything[:4] and "Synthetic Movie" in lines[1]
    assert [p.name for p in (run / "serving" / "tfmetarec").iterdir()] == ["1"]  # exported once, then reused
    for args, message in ((["--ratings", "50:9"], "trained range"),
                          (["--ratings", "50:5", "--user", "planet=Mars"], "Unknown user fields")):
        assert main(["recommend", "--workdir", str(run), *args]) == 2
        assert message in capsys.readouterr().err
