"""ONNX export: gradient ops lowered, checker + ONNX Runtime proof, parity with eager, bad requests refused."""

import numpy as np
import onnx
import pytest

from helpers import random_episode
from learner_checks import KINDS, STATIC, build
from tfmetarec import learners
from tfmetarec.export import request_inputs
from tfmetarec.export.onnx import OnnxScorer, export_onnx, quantize_onnx, sample_request
from tfmetarec.export.onnx_ops import HANDLERS, LoweringError
from tfmetarec.types import QUERY, features_of

EXPORTED = learners.available()
GRADIENT_OPS = {"BroadcastGradientArgs", "ReluGrad", "StridedSliceGrad", "DynamicStitch"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in EXPORTED:
        learner = build(name, seed=1)
        out[name] = (learner, export_onnx(learner, base / f"{name}.onnx"))
    return out


@pytest.mark.parametrize("name", EXPORTED)
@pytest.mark.parametrize("tasks,support,query,sizes", [(3, 6, 5, [0, 1, 3]), (2, 7, 9, [7, 7]), (1, 1, 4, [1])])
def test_adapt_and_score_parity_with_eager(exported, name, tasks, support, query, sizes):
    learner, path = exported[name]
    episode = random_episode(seed=4, tasks=tasks, support=support, query=query, support_sizes=sizes)
    eager = learner(episode).numpy()
    got = OnnxScorer(path)(request_inputs(episode))["scores"]
    assert got.shape == (tasks, query)
    np.testing.assert_allclose(got, eager, atol=1e-5)
    if KINDS[name] != STATIC and max(sizes) > 0:
        # the graph really adapts: scores differ from the unadapted model's
        prior = learner.model(features_of(episode[QUERY])).numpy()
        assert np.abs(got - prior).max() > 1e-4


@pytest.mark.parametrize("name", ["maml", "meta_sgd", "prototype", "task_encoder"])
def test_empty_support_scores_with_the_prior(exported, name):
    learner, path = exported[name]
    empty = random_episode(seed=5, tasks=2, support=0, query=6)
    masked = random_episode(seed=5, tasks=2, support=3, query=6, support_sizes=[0, 0])
    masked[QUERY] = empty[QUERY]
    scorer = OnnxScorer(path)
    got = scorer(request_inputs(empty))["scores"]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, learner(masked).numpy(), atol=1e-5)


def test_gradient_ops_are_the_ones_lowered(exported, tmp_path):
    """The MAML graph needs the lowerings: leaving one out makes the export fail, naming the op."""
    learner, _ = exported["maml"]
    for op in ("BroadcastGradientArgs", "ReluGrad"):
        with pytest.raises(LoweringError, match=op):
            export_onnx(learner, tmp_path / "never-written.onnx", disabled_handlers=(op,))
        assert not (tmp_path / "never-written.onnx").exists()
    assert GRADIENT_OPS <= set(HANDLERS)


def test_exported_graph_is_standard_onnx(exported):
    _, path = exported["maml"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & (GRADIENT_OPS | {"SigmoidGrad", "TanhGrad", "BiasAddGrad"})
    assert {"MatMul", "Where", "NonZero"} <= ops  # relu gradient and reduction axes, lowered
    names = {i.name for i in model.graph.input}
    assert {"support_user_fields", "support_rating", "support_mask", "query_item_id"} <= names


def test_serving_default_matches_the_model(tmp_path):
    learner = build("maml", seed=2)
    path = export_onnx(learner, tmp_path / "plain.onnx", signature="serving_default")
    episode = random_episode(seed=6, tasks=2, query=8)
    got = OnnxScorer(path)(request_inputs(episode, with_support=False))["scores"]
    np.testing.assert_allclose(got, learner.model(features_of(episode[QUERY])).numpy(), atol=1e-5)


def test_out_of_range_ids_go_to_the_oov_bucket(exported):
    learner, path = exported["maml"]
    episode = random_episode(seed=7, tasks=2)
    request = request_inputs(episode)
    fixed = {k: v.copy() for k, v in request.items()}
    request["query_item_id"] = request["query_item_id"].copy()
    request["query_item_id"][0, 1] = 999  # outside the item table
    request["support_user_fields"] = request["support_user_fields"].copy()
    request["support_user_fields"][1, 0, 1] = -4
    fixed["query_item_id"][0, 1] = 0
    fixed["support_user_fields"][1, 0, 1] = 0
    scorer = OnnxScorer(path)
    np.testing.assert_allclose(scorer(request)["scores"], scorer(fixed)["scores"], atol=1e-6)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda r: r.pop("support_mask"), "lacks inputs"),
        (lambda r: r.update(support_rating=r["support_rating"][:, :-1]), r"\[tasks, rows\]"),
        (lambda r: r.update(support_rating=np.where(r["support_mask"] > 0, np.nan, 0.0)), "NaN"),
        (lambda r: r.update(support_mask=r["support_mask"] * 0.5), "only 0 and 1"),
        (lambda r: r.update(query_user_fields=r["query_user_fields"].astype("float32") + 0.5), "integer IDs"),
        (lambda r: r.update(query_user_fields=np.concatenate([r["query_user_fields"]] * 2, axis=-1)), "columns"),
        (lambda r: r.update(query_user_id=r["query_user_id"][0]), "rank"),
        (lambda r: r.update(extra=np.zeros(1)), "does not take"),
    ],
)
def test_bad_requests_are_refused(exported, change, message):
    _, path = exported["maml"]
    request = {k: v.copy() for k, v in request_inputs(random_episode(seed=8, tasks=2)).items()}
    change(request)
    with pytest.raises(ValueError, match=message):
        OnnxScorer(path)(request)


def test_tasks_must_agree_between_support_and_query(exported):
    _, path = exported["maml"]
    request = request_inputs(random_episode(seed=9, tasks=2))
    other = request_inputs(random_episode(seed=9, tasks=3))
    request.update({k: v for k, v in other.items() if k.startswith("query_")})
    with pytest.raises(ValueError, match="same number of tasks"):
        OnnxScorer(path)(request)


def test_foreign_or_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxScorer(tmp_path / "absent.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf")
    with pytest.raises(Exception):
        OnnxScorer(corrupt)


def test_int8_quantisation_stays_close(tmp_path):
    learner = build("maml", seed=3)
    src = export_onnx(learner, tmp_path / "float.onnx")
    dst = quantize_onnx(src, tmp_path / "int8.onnx")
    request = sample_request(learner, tasks=3, support=6, query=10, seed=1)
    full = OnnxScorer(src)(request)["scores"]
    small = OnnxScorer(dst)(request)["scores"]
    assert np.isfinite(small).all()
    assert np.abs(full - small).max() < 0.1  # ratings on a 1-5 scale
