"""SavedModels for TF Serving whose graphs embed the learner's adaptation step.

Layout: ``<base>/<model_name>/<version>/`` (what TF Serving watches). Signatures,
all with a leading task axis ``T`` (one row per user; a REST request for one new
user uses ``T = 1``) and dynamic support size ``S`` and query size ``Q``:

* ``serving_default``: ``query_*`` features -> ``scores [T, Q]``, no adaptation
  (the meta-learned model as is: warm users or users with no ratings yet).
* ``adapt_and_score``: ``support_*`` features, ``support_rating [T, S]``,
  ``support_mask [T, S]`` and ``query_*`` features -> ``scores [T, Q]``, running
  the learner's own adaptation (same inner steps and learning rates as training).
* ``adapt``: the support inputs -> the adapted state (``state_<name>`` tensors,
  each with the task axis) so a service can cache a user's state.
* ``score_with_state``: ``state_<name>`` + ``query_*`` -> ``scores``.

Feature inputs of each part (``P`` = ``support`` or ``query``): ``P_user_id``,
``P_item_id`` int32 ``[T, N]`` (the item's row in the model's item table, whose
content the graph gathers); ``P_user_fields`` int32 ``[T, N, W_user]``.
IDs outside a vocabulary go to the out-of-vocabulary index 0 inside the graph.
Requests whose shapes disagree, whose mask is not 0/1, or whose ratings are NaN
or infinite fail with an error naming the input.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.types import FEATURE_KEYS, ITEM_ID, MASK, RATING, USER_FIELDS, USER_ID, fields_width

PARTS = ("support", "query")


def feature_widths(learner: MetaLearner) -> dict[str, int]:
    """Trailing width of ``user_fields`` the model expects."""
    return {USER_FIELDS: fields_width(learner.model.user_field_specs)}


def _specs(learner: MetaLearner, part: str) -> dict[str, tf.TensorSpec]:
    widths = feature_widths(learner)
    specs = {
        f"{part}_{USER_ID}": tf.TensorSpec([None, None], tf.int32, f"{part}_{USER_ID}"),
        f"{part}_{ITEM_ID}": tf.TensorSpec([None, None], tf.int32, f"{part}_{ITEM_ID}"),
        f"{part}_{USER_FIELDS}": tf.TensorSpec([None, None, widths[USER_FIELDS]], tf.int32, f"{part}_{USER_FIELDS}"),
    }
    if part == "support":
        specs[f"support_{RATING}"] = tf.TensorSpec([None, None], tf.float32, f"support_{RATING}")
        specs[f"support_{MASK}"] = tf.TensorSpec([None, None], tf.float32, f"support_{MASK}")
    return specs


def _clip_ids(ids: tf.Tensor, sizes: list[int] | int | tf.Tensor) -> tf.Tensor:
    """Map IDs outside ``[0, size)`` (per column when ``sizes`` is a list) to 0."""
    size = tf.cast(sizes, tf.int32)
    return tf.where((ids < 0) | (ids >= size), tf.zeros_like(ids), ids)


def _column_sizes(fields) -> list[int]:
    """Each encoded column's vocabulary size (a list field's size repeated over its width)."""
    return [int(f.vocab_size) for f in fields for _ in range(int(f.width))]


class ServingModule(tf.Module):
    """The exported graph: request validation, ID clipping, then the learner."""

    def __init__(self, learner: MetaLearner, jit_compile: bool = False):
        super().__init__()
        self.learner = learner
        self.jit_compile = bool(jit_compile)
        # The learner's work (adaptation, scoring) runs in inner functions that XLA may
        # compile; request checks stay outside them because XLA drops assertions.
        self._adapt_fn = tf.function(learner.adapt, jit_compile=self.jit_compile)
        self._score_fn = tf.function(learner.score, jit_compile=self.jit_compile)
        self._adapt_score_fn = tf.function(
            lambda support, query: learner.score(learner.adapt(support), query), jit_compile=self.jit_compile)
        self._plain_fn = tf.function(
            lambda query: learner.model.forward(learner.model.variable_values(), query), jit_compile=self.jit_compile)
        # Keras 3 variables wrap tf.Variables; track those so the SavedModel owns them.
        self.tracked_variables = [getattr(v, "value", v) for v in learner.variables]
        model = learner.model
        self._sizes = {
            USER_FIELDS: _column_sizes(model.user_field_specs),
            USER_ID: int(getattr(model, "num_users", 1)),
            # items are rows of the model's item table
            ITEM_ID: model.num_table_items,
        }
        support, query = _specs(learner, "support"), _specs(learner, "query")
        example = self._example_state()
        state = {f"state_{k}": tf.TensorSpec([None, *v.shape[1:]], v.dtype, f"state_{k}") for k, v in example.items()}
        self.serving_default = tf.function(self._score_plain, input_signature=[query])
        self.adapt_and_score = tf.function(self._adapt_and_score, input_signature=[{**support, **query}])
        self.adapt = tf.function(self._adapt, input_signature=[support])
        self.score_with_state = tf.function(self._score_with_state, input_signature=[{**state, **query}])

    def _example_state(self) -> dict[str, tf.Tensor]:
        widths = feature_widths(self.learner)
        part = {
            USER_ID: tf.zeros([1, 1], tf.int32), ITEM_ID: tf.zeros([1, 1], tf.int32),
            USER_FIELDS: tf.zeros([1, 1, widths[USER_FIELDS]], tf.int32),
            RATING: tf.zeros([1, 1]), MASK: tf.zeros([1, 1]),
        }
        return self.learner.adapt(part)

    def _features(self, inputs: dict[str, tf.Tensor], part: str) -> dict[str, tf.Tensor]:
        rows = tf.shape(inputs[f"{part}_{USER_ID}"])
        checks = []
        for key in FEATURE_KEYS:
            name = f"{part}_{key}"
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[name])[:2], rows, message=f"{name} must have the same [tasks, rows] as {part}_{USER_ID}"))
        with tf.control_dependencies(checks):
            out = {key: tf.identity(inputs[f"{part}_{key}"]) for key in FEATURE_KEYS}
        for key in (USER_FIELDS, USER_ID, ITEM_ID):
            out[key] = _clip_ids(out[key], self._sizes[key])
        return out

    def _support(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        support = self._features(inputs, "support")
        rating, mask = inputs[f"support_{RATING}"], inputs[f"support_{MASK}"]
        rows = tf.shape(inputs[f"support_{USER_ID}"])
        shapes = [
            tf.debugging.assert_equal(tf.shape(rating), rows, message="support_rating must be [tasks, support rows]"),
            tf.debugging.assert_equal(tf.shape(mask), rows, message="support_mask must be [tasks, support rows]"),
        ]
        with tf.control_dependencies(shapes):
            rating, mask = tf.identity(rating), tf.identity(mask)
        values = [
            tf.debugging.assert_equal(
                tf.reduce_all((mask == 0.0) | (mask == 1.0)), True, message="support_mask must hold only 0 and 1"),
            tf.debugging.assert_equal(
                tf.reduce_all(tf.math.is_finite(tf.where(mask > 0, rating, tf.zeros_like(rating)))), True,
                message="support_rating has NaN or infinite values on real (mask 1) rows"),
        ]
        with tf.control_dependencies(values):
            support[RATING] = tf.where(mask > 0, rating, tf.zeros_like(rating))
            support[MASK] = tf.identity(mask)
        return support

    def _check_tasks(self, inputs: dict[str, tf.Tensor]) -> list:
        return [tf.debugging.assert_equal(
            tf.shape(inputs[f"support_{USER_ID}"])[0], tf.shape(inputs[f"query_{USER_ID}"])[0],
            message="support and query must have the same number of tasks")]

    def _score_plain(self, inputs):
        return {"scores": self._plain_fn(self._features(inputs, "query"))}

    def _adapt_and_score(self, inputs):
        with tf.control_dependencies(self._check_tasks(inputs)):
            return {"scores": self._adapt_score_fn(self._support(inputs), self._features(inputs, "query"))}

    def _adapt(self, inputs):
        return {f"state_{k}": v for k, v in self._adapt_fn(self._support(inputs)).items()}

    def _score_with_state(self, inputs):
        state = {k[len("state_"):]: v for k, v in inputs.items() if k.startswith("state_")}
        return {"scores": self._score_fn(state, self._features(inputs, "query"))}


def export_saved_model(
    learner: MetaLearner,
    base_dir: str | os.PathLike,
    model_name: str = "tfmetarec",
    version: int = 1,
    jit_compile: bool = True,
) -> Path:
    """Write ``learner`` as a TF Serving SavedModel; returns ``<base>/<model_name>/<version>``.

    With ``jit_compile`` (the default) the adaptation and scoring run as XLA-compiled
    functions: on a 2-core CPU this halves the latency of ``adapt_and_score`` (see
    BENCHMARKS.md). XLA compiles once per distinct (tasks, support, query) shape, so a
    service should pad supports to a few sizes (padding rows carry mask 0 and change
    nothing); pass ``jit_compile=False`` for a plain graph.
    """
    if version < 1:
        raise ValueError(f"TF Serving versions are positive integers, got {version}.")
    path = Path(base_dir) / model_name / str(int(version))
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} already holds a model; choose another version.")
    module = ServingModule(learner, jit_compile=jit_compile)
    tf.saved_model.save(
        module,
        os.fspath(path),
        signatures={
            "serving_default": module.serving_default.get_concrete_function(),
            "adapt_and_score": module.adapt_and_score.get_concrete_function(),
            "adapt": module.adapt.get_concrete_function(),
            "score_with_state": module.score_with_state.get_concrete_function(),
        },
    )
    return path


def request_inputs(episode: dict, with_support: bool = True) -> dict[str, tf.Tensor]:
    """Flatten an episode ({"support": {...}, "query": {...}}) into signature inputs."""
    out = {f"query_{k}": episode["query"][k] for k in FEATURE_KEYS}
    if with_support:
        out.update({f"support_{k}": episode["support"][k] for k in (*FEATURE_KEYS, RATING, MASK)})
    return out
