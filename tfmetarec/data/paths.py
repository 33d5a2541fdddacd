"""Where the library looks for dataset files."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "TFMETAREC_DATA_DIR"
DEFAULT_FOLDERS = {
    "movielens-100k": ("movielens-100k", "ml-100k"),
    "movielens-1m": ("movielens-1m", "ml-1m"),
    "movielens-latest-small": ("ml-latest-small", "movielens-latest-small"),
    "movielens-20m": ("ml-20m", "movielens-20m"),
    "movielens-25m": ("ml-25m", "movielens-25m"),
}
"""The folder names each release is found under in :func:`default_data_dir` (first match wins)."""


def default_data_dir() -> Path:
    """``$TFMETAREC_DATA_DIR`` if set, else ``shared/data`` beside the repository checkout."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def dataset_dir(name: str) -> Path:
    """The default folder of a MovieLens release under :func:`default_data_dir`: the first of
    its conventional names (``movielens-1m/`` or ``ml-1m/``, ...) that exists, else the first."""
    if name not in DEFAULT_FOLDERS:
        raise ValueError(f"No default folder for dataset {name!r}; known: {sorted(DEFAULT_FOLDERS)}.")
    root = default_data_dir()
    for folder in DEFAULT_FOLDERS[name]:
        if (root / folder).is_dir():
            return root / folder
    return root / DEFAULT_FOLDERS[name][0]


def movielens_100k_dir() -> Path:
    """The default MovieLens 100K folder: ``default_data_dir() / "movielens-100k"``."""
    return default_data_dir() / "movielens-100k"
