# %% [markdown]
# # tfmetarec quickstart: meta-learning for cold-start recommendation
#
# Meta-train a MeLU-style model with MAML, evaluate the four cold-start scenarios
# (warm, new users, new items, both) against no adaptation and fine-tuning, and plot how
# the error falls as a new user gives more ratings.
#
# Runs on the built-in synthetic data with no download; switch `DATASET` to
# `"movielens-100k"` with the MovieLens files in `DATA_DIR` for the real thing.

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
import os

import tensorflow as tf

import tfmetarec as tmr
from tfmetarec import experiment

SMOKE = os.environ.get("TFMETAREC_NOTEBOOK_SMOKE") == "1"  # the test suite runs a tiny version
gpus = tf.config.list_physical_devices("GPU")
print(f"tfmetarec {tmr.__version__}, TensorFlow {tf.__version__}; "
      f"{'GPU: ' + gpus[0].name if gpus else 'no GPU, running on CPU'}")

# %%
DATASET = "synthetic"     # or "movielens-100k"
DATA_DIR = None           # e.g. "/content/ml-100k" for MovieLens
config = tmr.ExperimentConfig(
    dataset=DATASET,
    data_dir=DATA_DIR,
    learner=tmr.LearnerConfig(name="maml", inner_steps=5, inner_lr=0.05, adapt="decision"),
    train=tmr.TrainConfig(meta_steps=20 if SMOKE else 1500, pretrain_steps=20 if SMOKE else 1500,
                          jit_compile=not SMOKE),  # XLA pays for long runs; the smoke test skips compiling
)
run = experiment.train(config, workdir="runs/quickstart", verbose=0 if SMOKE else 1)

# %% [markdown]
# ## The cold-start report
# MAML adapts to each user's support ratings in 5 gradient steps; "no-adaptation" is the
# same network trained globally; "fine-tune" adapts that global network with plain SGD.

# %%
report = experiment.evaluate(run, workdir="runs/quickstart")
print(experiment.to_text(report))

# %% [markdown]
# ## Adaptation curves
# Error on new users against the number of support ratings they gave.

# %%
from IPython.display import Image, display

points = {"support_sizes": (1, 5), "inner_steps": (0, 2)} if SMOKE else {}  # the smoke test: fewer points
curves = experiment.adaptation_curves(run, "runs/quickstart", **points)
print(curves["support"].to_string(index=False))
for png in sorted(os.listdir("runs/quickstart")):
    if png.startswith("curve_support") and png.endswith(".png"):
        display(Image(filename=os.path.join("runs/quickstart", png)))
