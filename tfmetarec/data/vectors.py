"""Item vectors: dense descriptions of items (text, image or another model's embeddings).

A *vector field* reads an item column holding one fixed-length float array per item (or a
missing value). The arrays come with the data or from a file (:func:`read_item_vectors`):

* ``.npz``: an array ``item`` (integer IDs, ``[n]``) and an array ``vectors`` (``[n, dim]``);
* ``.csv`` / ``.tsv`` / ``.parquet``: a column ``item`` and one numeric column per dimension.

Every check names the file and the row (or the item): a mixed or wrong dimension, NaN or
infinite values, non-numeric cells, duplicate IDs, IDs the data does not know (how many, and
which), a file in another format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.config import VECTOR_FILE_SUFFIXES as VECTOR_FORMATS

ID_COLUMN = "item"


class VectorFileError(ValueError):
    """A vector file or column that cannot be used; the message names the file and row."""


def is_missing(value: object) -> bool:
    """Whether one cell is missing (None, NaN, NA); a list or array never is."""
    return not isinstance(value, (np.ndarray, list, tuple)) and bool(pd.isna(value))


def is_vector_cell(value: object) -> bool:
    """Whether one cell holds a vector: a 1-D numeric numpy array."""
    return isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.number)


def is_vector_column(values: pd.Series) -> bool:
    """Whether every non-missing cell of a column is a vector (and some cell is)."""
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(is_vector_cell(v) for v in present)


def vector_matrix(values: Sequence, ids: Sequence, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix [n, dim] float32, present [n] bool)`` of a column of vectors (missing cells:
    zeros, not present). A cell that is not a 1-D numeric array, a dimension that differs from
    the first vector's, or a non-finite value is a :class:`VectorFileError` naming the item."""
    cells = list(values)
    ids = list(ids)
    present = np.array([not is_missing(v) for v in cells], bool)
    dim = None
    for k in np.flatnonzero(present):
        v = cells[k]
        if not is_vector_cell(v):
            raise VectorFileError(f"{what}: item {ids[k]} holds {type(v).__name__}, not a 1-D array of numbers.")
        if dim is None:
            dim = len(v)
        elif len(v) != dim:
            raise VectorFileError(f"{what}: item {ids[k]} has a {len(v)}-dimensional vector; the others have {dim}.")
    if dim is None:
        raise VectorFileError(f"{what}: no item has a vector.")
    if dim < 1:
        raise VectorFileError(f"{what}: vectors must have at least one dimension.")
    matrix = np.zeros((len(cells), dim), np.float32)
    for k in np.flatnonzero(present):
        matrix[k] = cells[k]
    bad = present & ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise VectorFileError(f"{what}: item {ids[k]} has NaN or infinite values in its vector "
                              f"({int(bad.sum())} item(s) do).")
    return matrix, present


def _table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, matrix)`` of a CSV / TSV / Parquet vector file (rows numbered as in the file: line 2 = first row)."""
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, ValueError, OSError, ImportError) as err:
        raise VectorFileError(f"{path}: cannot be read as a {path.suffix[1:].upper()} vector file ({err}).") from None
    if ID_COLUMN not in frame.columns:
        raise VectorFileError(f"{path}: needs a column {ID_COLUMN!r} with the item IDs; has {list(frame.columns)[:8]}.")
    dims = [c for c in frame.columns if c != ID_COLUMN]
    if not dims:
        raise VectorFileError(f"{path}: has no vector columns beside {ID_COLUMN!r}.")
    first_line = 2 if path.suffix != ".parquet" else 1
    where = "line" if path.suffix != ".parquet" else "row"
    ids = pd.to_numeric(frame[ID_COLUMN], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(ids) | (ids != np.round(ids))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise VectorFileError(f"{path}, {where} {k + first_line}: item ID {frame[ID_COLUMN].iloc[k]!r} is not an "
                              "integer.")
    values = frame[dims].apply(lambda c: pd.to_numeric(c, errors="coerce")).to_numpy(dtype="float64", na_value=np.nan)
    raw = frame[dims].astype(str).to_numpy()
    unparsed = np.isnan(values) & ~np.isin(np.char.lower(raw.astype(str)), ["nan", "-nan"])
    if unparsed.any():
        k, j = (int(x) for x in np.argwhere(unparsed)[0])
        raise VectorFileError(f"{path}, {where} {k + first_line}: column {dims[j]!r} holds {raw[k, j]!r}, not a number.")
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        k, j = (int(x) for x in np.argwhere(nonfinite)[0])
        raise VectorFileError(f"{path}, {where} {k + first_line}: column {dims[j]!r} holds {raw[k, j]!r}; vectors must "
                              "be finite.")
    return ids.astype(np.int64), values.astype(np.float32)


def read_item_vectors(path: str | os.PathLike) -> pd.DataFrame:
    """A frame ``item, vector`` (one float32 array per item) from a vector file (see the module)."""
    path = Path(path)
    if path.suffix not in VECTOR_FORMATS:
        raise VectorFileError(f"{path}: unknown vector file format {path.suffix or '(no suffix)'!r}; use one of "
                              f"{VECTOR_FORMATS}.")
    if not path.is_file():
        raise VectorFileError(f"{path}: no such file.")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as arrays:
                missing = [k for k in (ID_COLUMN, "vectors") if k not in arrays.files]
                if missing:
                    raise VectorFileError(f"{path}: needs arrays 'item' and 'vectors'; lacks {missing} "
                                          f"(has {arrays.files}).")
                ids, matrix = arrays[ID_COLUMN], arrays["vectors"]
        except (ValueError, OSError) as err:
            if isinstance(err, VectorFileError):
                raise
            raise VectorFileError(f"{path}: not a readable .npz file ({err}).") from None
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise VectorFileError(f"{path}: 'item' must be a 1-D array of integer IDs, got {ids.dtype} {ids.shape}.")
        if matrix.ndim != 2 or len(matrix) != len(ids) or not np.issubdtype(matrix.dtype, np.number):
            raise VectorFileError(f"{path}: 'vectors' must be a numeric [items, dim] array with one row per ID "
                                  f"({len(ids)}), got {matrix.dtype} {matrix.shape}.")
        matrix = matrix.astype(np.float32)
        nonfinite = ~np.isfinite(matrix).all(axis=1)
        if nonfinite.any():
            k = int(np.flatnonzero(nonfinite)[0])
            raise VectorFileError(f"{path}, row {k}: item {int(ids[k])} has NaN or infinite values.")
        ids = ids.astype(np.int64)
    else:
        ids, matrix = _table(path)
    if matrix.shape[1] < 1:
        raise VectorFileError(f"{path}: vectors must have at least one dimension.")
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        dup = np.unique(ids[duplicated])
        raise VectorFileError(f"{path}: item IDs {dup[:5].tolist()} appear more than once ({len(dup)} duplicated).")
    return pd.DataFrame({ID_COLUMN: ids, "vector": list(matrix)})


def attach_item_vectors(items: pd.DataFrame, vectors: pd.DataFrame, column: str, what: str) -> pd.DataFrame:
    """``items`` with a column of vectors (missing for items without one). Every ID of ``vectors``
    must be an item of ``items``: the unknown ones are a :class:`VectorFileError` saying how many
    and which."""
    known = pd.Index(items[ID_COLUMN].to_numpy(np.int64))
    ids = vectors[ID_COLUMN].to_numpy(np.int64)
    unknown = ids[known.get_indexer(ids) < 0]
    if len(unknown):
        raise VectorFileError(f"{what}: {len(unknown)} item ID(s) are not items of the data, e.g. "
                              f"{np.sort(unknown)[:5].tolist()}.")
    if column in items.columns:
        raise VectorFileError(f"{what}: the items already have a column {column!r}.")
    by_id = dict(zip(ids.tolist(), vectors["vector"]))
    out = items.copy()
    out[column] = [by_id.get(int(i)) for i in out[ID_COLUMN]]
    return out


__all__ = ["VECTOR_FORMATS", "VectorFileError", "attach_item_vectors", "is_vector_cell", "is_vector_column",
           "read_item_vectors", "vector_matrix"]
