# %% [markdown]
# # Export for TF Serving and ONNX Runtime, adaptation included
#
# One request carries a new user's few ratings and the items to score; the exported graph
# adapts and scores with no Python in the loop.

# %%
import sys

if "google.colab" in sys.modules:  # install the library (Colab only; local runs use the checkout)
    from importlib.metadata import version

    # the (TensorFlow, Keras) pairs tfmetarec is tested with: colab/build.py copies pyproject.toml's compat matrix
    TESTED = []
    PACKAGE = "tfmetarec[onnx] @ git+https://github.com/tfmetarec/tfmetarec"
    tf_now, keras_now = version("tensorflow"), version("keras")
    minors = [".".join(tf.split(".")[:2]) for tf, _ in TESTED]
    if ".".join(tf_now.split(".")[:2]) in minors:  # keep Colab's TensorFlow and Keras
        %pip install -q "{PACKAGE}" "tensorflow=={tf_now}" "keras=={keras_now}"
    else:
        tf_new, keras_new = TESTED[-1]
        print(f"Colab's TensorFlow {tf_now} is not one tfmetarec is tested with ({', '.join(minors)}): "
              f"installing TensorFlow {tf_new} and Keras {keras_new} instead.")
        %pip install -q "{PACKAGE}" "tensorflow=={tf_new}" "keras=={keras_new}"

# %%
import json
import os
import shutil

import numpy as np
import tensorflow as tf

import tfmetarec as tmr
from tfmetarec import experiment
from tfmetarec.export import Buckets, export_saved_model, load_contract, make_request
from tfmetarec.export.clients import rest_body
from tfmetarec.export.onnx import OnnxRecommender, export_onnx

SMOKE = os.environ.get("TFMETAREC_NOTEBOOK_SMOKE") == "1"
print("GPU:", tf.config.list_physical_devices("GPU") or "none, running on CPU")

config = tmr.ExperimentConfig(train=tmr.TrainConfig(meta_steps=10 if SMOKE else 1000, pretrain_steps=0,
                                                   jit_compile=not SMOKE))
run = experiment.train(config, verbose=0)
learner, encoder = run.learner, run.prepared.encoder

# %% [markdown]
# ## Export: a SavedModel for stock TF Serving, and one static ONNX graph per bucket
# Requests are padded inside the graph to a few bucket sizes (users, support, candidates),
# so the runtime sees a bounded set of shapes; larger requests are refused with the limit.

# %%
shutil.rmtree("serving", ignore_errors=True)
buckets = Buckets(users=(1,), support=(8,), query=(16,)) if SMOKE else Buckets()
saved = export_saved_model(learner, "serving", "tfmetarec", version=1, encoder=encoder, buckets=buckets)
onnx_dir = export_onnx(learner, "serving/onnx/tfmetarec/1", encoder=encoder, buckets=buckets,
                       signatures=("adapt_and_score", "recommend"))
print(saved, onnx_dir)

# %% [markdown]
# ## A new user in raw IDs: 3 ratings in, scores for 5 candidates and a top-10 out

# %%
users = run.prepared.data.users
profile = users.iloc[0]
user = {"user_id": 0, "gender": profile["gender"], "age": profile["age"], "occupation": profile["occupation"],
        "zip": profile["zip"]}
rated = [(1, 5.0), (2, 4.0), (3, 1.0)]
fields = [f.name for f in encoder.fields_of("user")]
request = make_request([user], [rated], [[10, 11, 12, 13, 14]], fields)

served = tf.saved_model.load(str(saved)).signatures
specs = served["adapt_and_score"].structured_input_signature[1]
tf_scores = served["adapt_and_score"](**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in request.items()})
tf_scores = tf_scores["scores"].numpy()
onnx = OnnxRecommender(onnx_dir)
onnx_scores = onnx("adapt_and_score", request)["scores"]
print("SavedModel :", np.round(tf_scores, 3))
print("ONNX       :", np.round(onnx_scores, 3))
assert np.allclose(tf_scores, onnx_scores, atol=1e-5)

no_query = {k: v for k, v in request.items() if k != "query_item_id"}
top = onnx("recommend", no_query)
print("top items:", top["item_id"][0][:10].tolist())

# %% [markdown]
# ## The same request for TF Serving's REST API
# `docker run -p 8501:8501 -v $PWD/serving:/models -e MODEL_NAME=tfmetarec tensorflow/serving`,
# then POST this body to `http://localhost:8501/v1/models/tfmetarec:predict`.

# %%
body = rest_body(load_contract(saved), "adapt_and_score", request)
print(json.dumps(body)[:400], "...")
