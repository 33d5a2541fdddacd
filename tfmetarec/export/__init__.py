"""Export: SavedModels for stock TF Serving and ONNX graphs that embed the adaptation step,
both taking raw IDs under one serving contract.

Names are imported on first use: ``tfmetarec.export.contract`` (the request contract, its
buckets and checks) needs neither TensorFlow nor ONNX, so the command line reads it before
TensorFlow loads. The ONNX part (:mod:`tfmetarec.export.onnx`) needs the ``onnx`` extra and is
imported from there.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Buckets": "contract",
    "RequestError": "contract",
    "ServingContract": "contract",
    "check_request": "contract",
    "make_request": "contract",
    "RawInputs": "raw_inputs",
    "ServingModule": "saved_model",
    "export_saved_model": "saved_model",
    "load_contract": "saved_model",
}


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'tfmetarec.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tfmetarec.export.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


__all__ = sorted(_NAMES)
