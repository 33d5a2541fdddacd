"""A keyed integrity tag on every served state, so a state a client stored comes back unchanged.

The threat model (see ``export/README.md``): the service that loads an export holds its secret
key; a client that keeps states between requests holds states and tags, never the key. A state
that was changed (one value, a truncated tensor), made for another user, or made by another model
(even with its fingerprint copied) does not carry a valid tag and is refused.

* The SavedModel computes the tag in its graph: each row of every entry serialised as a tensor
  (its dtype, shape and bytes: floats as float32, integers as int64), the entries joined in name
  order, and hashed with SipHash keyed by the export's key (``tf.strings.to_hash_bucket_strong``).
  The key lives in the graph, not in ``contract.json``.
* The ONNX client computes it in numpy: HMAC-SHA256 over each row's bytes with the key kept in
  the ONNX folder's ``state_key.json`` (a file for the service, not for its clients).

The two exports need not agree with each other: each refuses states it did not make.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np

KEY_FILE = "state_key.json"
TAG_BUCKETS = 1 << 62
"""Tags are integers in ``[0, 2**62)``."""


def new_key() -> tuple[int, int]:
    """A fresh secret key: two random 63-bit integers."""
    return secrets.randbits(63), secrets.randbits(63)


def check_key(key: tuple[int, int] | list[int]) -> tuple[int, int]:
    """``key`` as two integers in ``[0, 2**63)``, or a clear error."""
    try:
        k0, k1 = (int(k) for k in key)
    except (TypeError, ValueError):
        raise ValueError(f"A state key is two integers, got {key!r}.") from None
    if not (0 <= k0 < 1 << 63 and 0 <= k1 < 1 << 63):
        raise ValueError("A state key is two integers in [0, 2**63).")
    return k0, k1


def _rows_tf(state: Mapping):
    """Each row's entries as one string: ``name:<serialised row>;name:...`` in name order. One user
    known while tracing (a one-user signature) serialises the rows directly; otherwise one row at a
    time (``tf.map_fn``). Serialising costs a copy of the bytes, where writing every value out as
    text cost ~1.3 ms for a MAML state of ~21,000 values (BENCHMARKS.md)."""
    import tensorflow as tf

    names = sorted(state)
    values = []
    for name in names:
        x = tf.convert_to_tensor(state[name])
        values.append(tf.cast(x, tf.float32 if x.dtype.is_floating else tf.int64))

    def row(parts) -> tf.Tensor:
        return tf.strings.reduce_join([tf.strings.join([f"{name}:", tf.io.serialize_tensor(part)])
                                       for name, part in zip(names, parts)], separator=";")

    if all(v.shape.rank and v.shape[0] == 1 for v in values):
        return row([v[0] for v in values])[None]
    return tf.map_fn(row, values, fn_output_signature=tf.string)


def tag_tf(state: Mapping, key: tuple[int, int]):
    """The tag ``[T]`` int64 of a state ``{name: [T, ...]}`` (the envelope's tag excluded by the caller)."""
    import tensorflow as tf

    return tf.strings.to_hash_bucket_strong(_rows_tf(state), TAG_BUCKETS, list(check_key(key)))


def _canonical(x) -> np.ndarray:
    """One byte layout per value whatever dtype a client holds it in: float32, or int64."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.astype(np.float32 if x.dtype.kind == "f" else np.int64))


def tag_numpy(state: Mapping[str, np.ndarray], key: tuple[int, int]) -> np.ndarray:
    """The ONNX client's tag ``[T]`` int64: HMAC-SHA256 of each row's bytes, in name order."""
    k0, k1 = check_key(key)
    secret = k0.to_bytes(8, "little") + k1.to_bytes(8, "little")
    names = sorted(state)
    users = len(state[names[0]]) if names else 0
    out = np.zeros(users, np.int64)
    arrays = {n: _canonical(state[n]) for n in names}
    for t in range(users):
        mac = hmac.new(secret, digestmod=hashlib.sha256)
        for n in names:
            row = arrays[n][t]
            mac.update(f"{n}:{row.dtype.str}:{row.shape}:".encode())
            mac.update(row.tobytes())
        out[t] = int.from_bytes(mac.digest()[:8], "little") % TAG_BUCKETS
    return out


def write_key(folder: str | os.PathLike, key: tuple[int, int]) -> Path:
    """Keep ``key`` in ``folder/state_key.json`` (readable by its owner only)."""
    path = Path(folder) / KEY_FILE
    path.write_text(json.dumps({"key": [str(k) for k in check_key(key)]}), encoding="utf-8")
    path.chmod(0o600)
    return path


def read_key(folder: str | os.PathLike) -> tuple[int, int]:
    """The key :func:`write_key` kept in ``folder``; a clear error when it is missing or broken."""
    path = Path(folder) / KEY_FILE
    try:
        return check_key(json.loads(path.read_text(encoding="utf-8"))["key"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the export's state key (needed to check states).") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a state key file ({err}).") from None


__all__ = ["KEY_FILE", "TAG_BUCKETS", "check_key", "new_key", "read_key", "tag_numpy", "tag_tf", "write_key"]
