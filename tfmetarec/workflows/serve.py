"""Serving a trained run: export it, and recommend for a new user through the exported signature.

``tfmetarec export`` and ``tfmetarec recommend`` are thin layers over these two functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.export.names import SCORES, TOP_ITEMS
from tfmetarec.export.contract import CANDIDATES, EXHAUSTIVE_UP_TO, Buckets, check_request, make_request
from tfmetarec.export.saved_model import export_saved_model, learner_fingerprint, load_contract
from tfmetarec.learners import MetaLearner
from tfmetarec.run_folder import RunFolder

RECOMMEND_TOP_K = 50
"""Items the run's own ``recommend`` export keeps (``k`` above it re-exports with ``k``)."""


def export_run(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    name: str = "tfmetarec",
    version: int = 1,
    *,
    onnx: bool = False,
    quantize: bool = False,
    jit_compile: bool = False,
    top_k: int = 50,
    buckets: Buckets | None = None,
    candidates: int | str | None = CANDIDATES,
    exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
    static: bool = True,
) -> list[Path]:
    """Export a run: the SavedModel at ``<out>/<name>/<version>`` and, with ``onnx``, the
    per-bucket ONNX graphs at ``<out>/onnx/<name>/<version>/``. Returns what was written.
    ``candidates`` / ``exhaustive_up_to``: the two-stage ``recommend`` of a large catalogue
    (:func:`~tfmetarec.export.export_saved_model`); ``static``: the SavedModel's one-user signatures
    at static shapes as well."""
    folder = RunFolder(workdir)
    folder.require_trained()
    learner, encoder = folder.load_learner(), folder.load_encoder()
    search = {"candidates": candidates, "exhaustive_up_to": exhaustive_up_to}
    written = [export_saved_model(learner, out, name, version, encoder=encoder, buckets=buckets, top_k=top_k,
                                  jit_compile=jit_compile, static=static, **search)]
    if onnx:
        from tfmetarec.export.onnx import export_onnx, onnx_buckets, quantize_onnx

        target = Path(out) / "onnx" / name / str(version)
        written.append(export_onnx(learner, target, encoder=encoder, top_k=top_k, buckets=onnx_buckets(buckets),
                                   **search))
        if quantize:
            for path in sorted(target.glob("*.onnx")):
                if not path.name.endswith(".int8.onnx"):
                    written.append(quantize_onnx(path, path.with_suffix(".int8.onnx")))
    return written


def _cached_export(folder: RunFolder, learner: MetaLearner, k: int) -> Path:
    """The run's own SavedModel under ``<workdir>/serving``, exported on first use and again
    whenever the run's learner changed (the contract's fingerprint tells) or ``k`` exceeds
    what the cached one keeps."""
    base = folder.serving_dir / "tfmetarec"
    want = learner_fingerprint(learner)
    versions = sorted(int(p.name) for p in base.glob("*") if p.name.isdigit()) if base.is_dir() else []
    for v in reversed(versions):
        try:
            contract = load_contract(base / str(v))
        except (FileNotFoundError, ValueError):
            continue
        if contract.fingerprint == want and contract.top_k >= min(k, contract.catalogue_size()):
            return base / str(v)
    return export_saved_model(learner, folder.serving_dir, "tfmetarec", (versions[-1] + 1) if versions else 1,
                              encoder=folder.load_encoder(), top_k=max(k, RECOMMEND_TOP_K), static=False)


def recommend(
    workdir: str | os.PathLike,
    ratings: Sequence[tuple[int, float]],
    user: Mapping[str, Any] | None = None,
    k: int = 10,
    titles: bool = True,
) -> pd.DataFrame:
    """The top ``k`` items of the catalogue for a new user with these ``(item_id, rating)``
    pairs and raw feature values (``{"gender": "F", "age": 25}``), answered by the run's
    exported ``recommend`` signature (the run is exported under ``<workdir>/serving`` on
    first use). Columns: ``rank``, ``item_id``, ``score`` and, when the run's data can be
    read, ``title``."""
    import tensorflow as tf

    folder = RunFolder(workdir)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    folder.require_trained()
    learner, encoder, config = folder.load_learner(), folder.load_encoder(), folder.load_config()
    user = dict(user or {})
    fields = [f.name for f in encoder.fields_of("user")]
    unknown = sorted(set(user) - set(fields))
    if unknown:
        raise ValueError(f"Unknown user fields {unknown}; this model's user fields are {fields}.")
    path = _cached_export(folder, learner, k)
    request = make_request([{"user_id": 0, **user}], [list(ratings)], None, fields)
    check_request(load_contract(path), "recommend", request)  # a clear message before the graph's own checks
    signature = tf.saved_model.load(str(path)).signatures["recommend"]
    specs = signature.structured_input_signature[1]
    out = signature(**{n: tf.constant(v, dtype=specs[n].dtype) for n, v in request.items()})
    items, scores = out[TOP_ITEMS].numpy()[0][:k], out[SCORES].numpy()[0][:k]
    keep = items >= 0
    table = pd.DataFrame({"rank": np.arange(1, int(keep.sum()) + 1), "item_id": items[keep], "score": scores[keep]})
    if titles:
        try:
            from tfmetarec.workflows.prepare import load_data

            names = load_data(config).items.set_index("item")["title"]
            table["title"] = [names.get(int(i), "") for i in table["item_id"]]
        except (FileNotFoundError, ValueError, KeyError):
            pass
    return table


__all__ = ["export_run", "recommend"]
