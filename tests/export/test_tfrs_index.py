"""The [tfrs] extra: TensorFlow Recommenders' BruteForce index, fed with adapted user vectors,
returns the exported `recommend` signature's top-k (run in a subprocess with TF_USE_LEGACY_KERAS=1,
which TFRS 0.7 needs)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r'''
import numpy as np, tensorflow as tf
import serving_helpers as H
from tfmetarec.export import ServingModule
from tfmetarec.export.tfrs_index import TfrsRecommender
import tensorflow_recommenders as tfrs, keras
assert keras.__version__.startswith("3"), keras.__version__      # our models stay on Keras 3
world = H.world()
learner = H.trained(world, model="two_tower", steps=10)
module = ServingModule(learner, world[2], H.BUCKETS, top_k=8)
request = H.random_request(world, np.random.default_rng(4), 3, 12, None, garbage=False)
request["support_mask"][:, :2] = 1.0
served = module.recommend({k: tf.constant(v) for k, v in request.items()})
state = module.adapt({k: tf.constant(v) for k, v in request.items()})
own = {k[len("state_"):]: v for k, v in state.items()
       if k[len("state_"):] not in ("fingerprint", "version", "user_index", "user_fields")}
index = TfrsRecommender(learner, k=8)
rated = [set(request["support_item_id"][t][request["support_mask"][t] > 0].tolist()) for t in range(3)]
ids, scores = index.recommend(own, state["state_user_index"].numpy(), state["state_user_fields"].numpy(), rated)
np.testing.assert_allclose(scores, served["scores"].numpy(), atol=1e-4)
assert (ids == served["item_id"].numpy()).mean() > 0.9, (ids, served["item_id"].numpy())  # float ties may swap
print("TFRS OK", tfrs.__version__)
'''


def test_tfrs_brute_force_index_answers_like_the_recommend_signature():
    if importlib.util.find_spec("tensorflow_recommenders") is None:
        pytest.skip("tensorflow-recommenders not installed (the [tfrs] extra; `make test` installs it)")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "export"), str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TFRS OK" in out.stdout


def test_the_index_needs_legacy_keras_and_a_dot_product_model(monkeypatch):
    import serving_helpers as H

    from tfmetarec.export.tfrs_index import TfrsRecommender

    world = H.world()
    with pytest.raises(ValueError, match="dot product"):
        TfrsRecommender(H.trained(world, steps=0))
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    with pytest.raises(ImportError, match="TF_USE_LEGACY_KERAS=1"):
        TfrsRecommender(H.trained(world, model="two_tower", steps=0))
