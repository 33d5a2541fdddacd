"""Export: SavedModels for stock TF Serving and ONNX graphs that embed the adaptation step,
both taking raw IDs under one serving contract.

Names are imported on first use: ``tfmetarec.export.contract`` (the request contract, its
buckets and checks) needs neither TensorFlow nor ONNX, so the command line reads it before
TensorFlow loads. The ONNX part (:mod:`tfmetarec.export.onnx`) needs the ``onnx`` extra and is
imported from there.
"""

from __future__ import annotations

from tfmetarec._lazy import lazy_names

_NAMES = {
    "Buckets": "contract",
    "RequestError": "contract",
    "ServingContract": "contract",
    "bucketed_request": "contract",
    "check_request": "contract",
    "make_request": "contract",
    "RawInputs": "raw_inputs",
    "ServingModule": "saved_model",
    "export_saved_model": "saved_model",
    "load_contract": "saved_model",
}


__getattr__, __dir__ = lazy_names("tfmetarec.export", _NAMES)

__all__ = sorted(_NAMES)
