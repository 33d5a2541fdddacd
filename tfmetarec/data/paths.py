"""Where the library looks for dataset files."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "TFMETAREC_DATA_DIR"


def default_data_dir() -> Path:
    """``$TFMETAREC_DATA_DIR`` if set, else ``shared/data`` beside the repository checkout."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def movielens_100k_dir() -> Path:
    """The default MovieLens 100K folder: ``default_data_dir() / "movielens-100k"``."""
    return default_data_dir() / "movielens-100k"
