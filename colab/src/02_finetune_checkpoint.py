# %% [markdown]
# # Fine-tune a published checkpoint on your own ratings
#
# A preset is a trained learner plus its feature vocabularies, checksummed. Your data has
# other users, items and vocabularies: fine-tuning transfers what matches (decision
# layers, learned rates, embedding rows of feature values both datasets share) and
# re-initialises the rest, then continues meta-training on your data.

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
from tfmetarec.data import InteractionData, make_synthetic
from tfmetarec.presets import available_presets, finetune, from_preset

SMOKE = os.environ.get("TFMETAREC_NOTEBOOK_SMOKE") == "1"
print("GPU:", tf.config.list_physical_devices("GPU") or "none, running on CPU")

# Registered names work in a checkout; elsewhere load the same folder over https.
NAME = "tiny-synthetic"
SOURCE = NAME if NAME in available_presets() else (
    f"https://raw.githubusercontent.com/tfmetarec/tfmetarec/main/saved_models/{NAME}")
preset = from_preset(SOURCE)  # every file's sha256 is checked before loading
print(preset.metadata["description"])
preset.metrics

# %% [markdown]
# ## Your data as DataFrames
# Three frames: ratings (`user`, `item`, `rating`, `timestamp`), users (`user`, `gender`,
# `age`, `occupation`, `zip`) and items (`item`, `title`, `year`, `genres` as a list).
# Here they are generated, with IDs that share nothing with the preset's.

# %%
demo = make_synthetic(num_users=400, num_items=300, seed=0)
ratings = demo.ratings.assign(user=demo.ratings.user + 10_000, item=demo.ratings.item + 5_000)
users = demo.users.assign(user=demo.users.user + 10_000)
items = demo.items.assign(item=demo.items.item + 5_000)
mine = InteractionData("my-data", ratings, users, items)
ratings.head()

# %%
config = tmr.ExperimentConfig(
    split=tmr.SplitConfig(new_item_year=1998),  # items released from 1998 on count as new in your data
    train=tmr.TrainConfig(meta_steps=10 if SMOKE else 500, pretrain_steps=10 if SMOKE else 500, seed=1,
                          jit_compile=not SMOKE),
)
run, transfer_report = finetune(preset, config, workdir="runs/finetuned", data=mine)
print(transfer_report.to_text())

# %%
report = experiment.evaluate(run)
print(experiment.to_text(report))
