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
from tfmetarec.export import export_saved_model, request_inputs
from tfmetarec.export.onnx import OnnxScorer, export_onnx
from tfmetarec.tasks import eval_batches

SMOKE = os.environ.get("TFMETAREC_NOTEBOOK_SMOKE") == "1"
print("GPU:", tf.config.list_physical_devices("GPU") or "none, running on CPU")

config = tmr.ExperimentConfig(train=tmr.TrainConfig(meta_steps=10 if SMOKE else 1000, pretrain_steps=0))
run = experiment.train(config, verbose=0)
learner = run.learner

# %%
shutil.rmtree("serving", ignore_errors=True)
saved = export_saved_model(learner, "serving", "tfmetarec", version=1)
onnx_path = export_onnx(learner, "serving/onnx/adapt_and_score.onnx")
print(saved, onnx_path)

# %% [markdown]
# ## A new user: 3 ratings in, scores for 5 candidate items out

# %%
episode, _ = next(iter(eval_batches(run.prepared.encoded, run.prepared.scenarios["user_cold"], batch_size=1)))
request = {k: v[:1, :3] if k.startswith("support_") else v[:1, :5] for k, v in request_inputs(episode).items()}

served = tf.saved_model.load(str(saved)).signatures["adapt_and_score"]
tf_scores = served(**{k: tf.constant(v) for k, v in request.items()})["scores"].numpy()
onnx_scores = OnnxScorer(onnx_path)(request)["scores"]
print("SavedModel :", np.round(tf_scores, 3))
print("ONNX       :", np.round(onnx_scores, 3))
assert np.allclose(tf_scores, onnx_scores, atol=1e-5)

# %% [markdown]
# ## The same request for TF Serving's REST API
# `docker run -p 8501:8501 -v $PWD/serving:/models -e MODEL_NAME=tfmetarec tensorflow/serving`,
# then POST this body to `http://localhost:8501/v1/models/tfmetarec:predict`.

# %%
body = {"signature_name": "adapt_and_score", "inputs": {k: v.tolist() for k, v in request.items()}}
print(json.dumps(body)[:400], "...")
