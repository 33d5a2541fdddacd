"""Loaders for the MovieLens 100K, 1M and latest-small releases, and ``load_dataset``."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfmetarec.data import _parse as P
from tfmetarec.data.paths import dataset_dir
from tfmetarec.data.schema import (
    MOVIELENS_GENRES,
    RESERVED_ITEM_COLUMNS,
    DataFormatError,
    Field,
    InteractionData,
    infer_fields,
)

GENRES_100K = ("unknown", *MOVIELENS_GENRES)  # the column order of u.item

OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

RATING_FIELDS = ("user", "item", "rating", "timestamp")
CSV_FIELDS = ("userId", "movieId", "rating", "timestamp")
AGE_CODES_1M = (1, 18, 25, 35, 45, 50, 56)
NO_GENRES = "(no genres listed)"
_TITLE_YEAR = r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$"

DATASETS = ("synthetic", "movielens-100k", "movielens-1m", "movielens-latest-small", "movielens-20m", "movielens-25m")
LIST_SEPARATOR = "|"
"""Values of a list cell in an item side file are separated by this (as MovieLens' genres are)."""
SIDE_KEYS = ("item", "movieId", "item_id")


def _find_dir(path: str | Path, label: str, files: tuple[str, ...], aliases: tuple[str, ...]) -> Path:
    """``path`` itself or a conventionally named sub-folder holding all ``files``."""
    root = Path(path).expanduser()
    expected = f"expected a folder with {', '.join(files)}"
    if not root.is_dir():
        raise FileNotFoundError(f"{label} directory not found: {root} ({expected})")
    for candidate in (root, *(root / a for a in aliases)):
        if all((candidate / f).is_file() for f in files):
            return candidate
    missing = [f for f in files if not (root / f).is_file()]
    raise FileNotFoundError(f"{label} directory {root} is missing {', '.join(missing)} ({expected})")


def _ratings(table: P.Table, lo: float, hi: float, half_stars: bool = False) -> pd.DataFrame:
    user = P.to_int(table, "user", lo=1)
    item = P.to_int(table, "item", lo=1)
    rating = P.to_float(table, "rating", lo=lo, hi=hi)
    steps = rating * (2 if half_stars else 1)
    off = steps != np.round(steps)
    if off.any():
        i = int(np.argmax(off))
        step = "half-star" if half_stars else "whole-star"
        raise table.error(i, f"rating {table.cell(i, 'rating')!r} is not a {step} value")
    timestamp = P.to_int(table, "timestamp", lo=0)
    P.check_unique(table, {"user": user, "item": item})
    return pd.DataFrame({"user": user, "item": item, "rating": rating.astype("float32"), "timestamp": timestamp})


def _check_refs(
    table: P.Table,
    ratings: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame,
    user_file: str,
    item_file: str,
) -> None:
    if users is not None:
        P.check_known(table, "user", ratings["user"].to_numpy(), users["user"].to_numpy(), user_file)
    P.check_known(table, "item", ratings["item"].to_numpy(), items["item"].to_numpy(), item_file)


def _title_year(titles: pd.Series) -> pd.Series:
    return pd.to_numeric(titles.str.extract(_TITLE_YEAR, expand=False), errors="coerce").astype("Int64")


def _split_genres(table: P.Table, col: str) -> list[list[str]]:
    out = []
    for cell in table.frame[col]:
        cell = cell.strip()
        out.append([] if cell in ("", NO_GENRES) else [g.strip() for g in cell.split("|")])
    return out


def load_movielens_100k(
    path: str | Path,
    item_side_file: str | Path | None = None,
    list_columns: Sequence[str] | None = None,
    list_separator: str = LIST_SEPARATOR,
) -> InteractionData:
    """MovieLens 100K from ``u.data``, ``u.user`` and ``u.item`` (latin-1, or UTF-8 when a file was re-saved so); ``item_side_file``
    adds item content (:func:`read_item_side_file`)."""
    root = _find_dir(path, "MovieLens 100K", ("u.data", "u.user", "u.item"), ("ml-100k", "movielens-100k"))
    rt = P.read_delimited(root / "u.data", "\t", RATING_FIELDS, numeric=RATING_FIELDS)
    ratings = _ratings(rt, 1, 5)

    ut = P.read_delimited(root / "u.user", "|", ("user", "age", "gender", "occupation", "zip"), P.MOVIELENS_TEXT)
    users = pd.DataFrame(
        {
            "user": P.to_int(ut, "user", lo=1),
            "gender": ut.frame["gender"].str.strip(),
            "age": P.to_int(ut, "age", lo=0, hi=120),
            "occupation": ut.frame["occupation"].str.strip(),
            "zip": ut.frame["zip"].str.strip(),
        }
    )
    P.check_unique(ut, {"user": users["user"].to_numpy()})

    flags = tuple(f"g{j}" for j in range(len(GENRES_100K)))
    it = P.read_delimited(root / "u.item", "|", ("item", "title", "release", "video", "url", *flags), P.MOVIELENS_TEXT)
    onehot = np.stack([P.to_int(it, f, lo=0, hi=1) for f in flags], axis=1).astype(bool)
    titles = it.frame["title"].str.strip()
    release = pd.to_numeric(it.frame["release"].str.extract(r"(\d{4})\s*$", expand=False), errors="coerce")
    items = pd.DataFrame(
        {
            "item": P.to_int(it, "item", lo=1),
            "title": titles,
            "year": release.astype("Int64").fillna(_title_year(titles)),
            "genres": [[GENRES_100K[j] for j in np.flatnonzero(row)] for row in onehot],
        }
    )
    P.check_unique(it, {"item": items["item"].to_numpy()})
    _check_refs(rt, ratings, users, items, "u.user", "u.item")
    return _with_side_file("movielens-100k", ratings, users, items, "u.item", item_side_file, list_columns,
                           list_separator)


def load_movielens_1m(
    path: str | Path,
    item_side_file: str | Path | None = None,
    list_columns: Sequence[str] | None = None,
    list_separator: str = LIST_SEPARATOR,
) -> InteractionData:
    """MovieLens 1M from ``ratings.dat``, ``users.dat`` and ``movies.dat`` (``::``-separated).

    ``item_side_file`` adds item content from a side file (see :func:`read_item_side_file`:
    MPAA rate, directors, actors, ... as published cold-start work uses them).
    """
    root = _find_dir(path, "MovieLens 1M", ("ratings.dat", "users.dat", "movies.dat"), ("ml-1m", "movielens-1m"))
    rt = P.read_delimited(root / "ratings.dat", "::", RATING_FIELDS, P.MOVIELENS_TEXT, numeric=RATING_FIELDS)
    ratings = _ratings(rt, 1, 5)

    ut = P.read_delimited(root / "users.dat", "::", ("user", "gender", "age", "occupation", "zip"), P.MOVIELENS_TEXT)
    age = P.to_int(ut, "age")
    bad_age = ~np.isin(age, AGE_CODES_1M)
    if bad_age.any():
        raise ut.error(int(np.argmax(bad_age)), f"age code {int(age[bad_age][0])} is not one of {AGE_CODES_1M}")
    occupation = P.to_int(ut, "occupation", lo=0, hi=len(OCCUPATIONS_1M) - 1)
    users = pd.DataFrame(
        {
            "user": P.to_int(ut, "user", lo=1),
            "gender": ut.frame["gender"].str.strip(),
            "age": age,
            "occupation": [OCCUPATIONS_1M[c] for c in occupation],
            "zip": ut.frame["zip"].str.strip(),
        }
    )
    P.check_unique(ut, {"user": users["user"].to_numpy()})

    mt = P.read_delimited(root / "movies.dat", "::", ("item", "title", "genres"), P.MOVIELENS_TEXT)
    titles = mt.frame["title"].str.strip()
    items = pd.DataFrame(
        {
            "item": P.to_int(mt, "item", lo=1),
            "title": titles,
            "year": _title_year(titles),
            "genres": _split_genres(mt, "genres"),
        }
    )
    P.check_unique(mt, {"item": items["item"].to_numpy()})
    _check_refs(rt, ratings, users, items, "users.dat", "movies.dat")
    return _with_side_file("movielens-1m", ratings, users, items, "movies.dat", item_side_file, list_columns,
                           list_separator)


CSV_RELEASES = {
    "movielens-latest-small": ("MovieLens latest-small", ("ml-latest-small", "movielens-latest-small")),
    "movielens-20m": ("MovieLens 20M", ("ml-20m", "movielens-20m")),
    "movielens-25m": ("MovieLens 25M", ("ml-25m", "movielens-25m")),
}
"""The releases with the ``ratings.csv`` + ``movies.csv`` layout: label and folder names."""


def load_movielens_latest_small(
    path: str | Path,
    item_side_file: str | Path | None = None,
    list_columns: Sequence[str] | None = None,
    list_separator: str = LIST_SEPARATOR,
    name: str = "movielens-latest-small",
) -> InteractionData:
    """MovieLens latest-small from ``ratings.csv`` and ``movies.csv`` (no user demographics).

    The 20M/25M/latest releases share this layout and load the same way from any
    folder (``name`` labels the result: ``movielens-20m`` ...; :func:`load_movielens_20m`
    and :func:`load_movielens_25m` set it). A large ``ratings.csv`` is parsed by
    pandas' C reader without a Python object per row (25M ratings: about 1 GB of
    columns). When ``tags.csv`` is present, each movie's user tags become a ``tags``
    list field. ``item_side_file`` adds item content (:func:`read_item_side_file`).
    """
    if name not in CSV_RELEASES:
        raise ValueError(f"Unknown ratings.csv release {name!r}; choose from {sorted(CSV_RELEASES)}.")
    label, aliases = CSV_RELEASES[name]
    root = _find_dir(path, label, ("ratings.csv", "movies.csv"), aliases)
    rt = P.read_delimited(root / "ratings.csv", ",", CSV_FIELDS, header=True, numeric=CSV_FIELDS)
    rt = P.Table(rt.file, rt.frame.set_axis(list(RATING_FIELDS), axis=1), rt.lines, rt.path, rt.header)
    ratings = _ratings(rt, 0.5, 5, half_stars=True)

    mt = P.read_delimited(root / "movies.csv", ",", ("movieId", "title", "genres"), header=True, quoted=True)
    titles = mt.frame["title"].str.strip()
    items = pd.DataFrame(
        {
            "item": P.to_int(mt, "movieId", lo=1),
            "title": titles,
            "year": _title_year(titles),
            "genres": _split_genres(mt, "genres"),
        }
    )
    P.check_unique(mt, {"movieId": items["item"].to_numpy()})
    _check_refs(rt, ratings, None, items, "", "movies.csv")
    if (root / "tags.csv").exists():
        items["tags"] = _movie_tags(root / "tags.csv", items["item"].to_numpy())
    users = pd.DataFrame({"user": np.sort(pd.unique(ratings["user"].to_numpy()))})
    return _with_side_file(name, ratings, users, items, "movies.csv", item_side_file, list_columns, list_separator)


def load_movielens_20m(path: str | Path, **kwargs: Any) -> InteractionData:
    """MovieLens 20M (``ratings.csv`` + ``movies.csv``, the latest-small layout) from any folder."""
    return load_movielens_latest_small(path, name="movielens-20m", **kwargs)


def load_movielens_25m(path: str | Path, **kwargs: Any) -> InteractionData:
    """MovieLens 25M (``ratings.csv`` + ``movies.csv``, the latest-small layout) from any folder."""
    return load_movielens_latest_small(path, name="movielens-25m", **kwargs)




def read_item_side_file(
    path: str | Path,
    known_items: np.ndarray,
    list_columns: Sequence[str] | None = None,
    list_separator: str = LIST_SEPARATOR,
    items_file: str = "the item file",
) -> tuple[pd.DataFrame, list[str]]:
    """Item content from a CSV (``.csv``, comma, quoting allowed) or TSV (``.tsv``/``.tab``) file.

    The header names the columns; the key column is ``item`` (or ``movieId`` /
    ``item_id``) and every other column is content. A cell holding ``list_separator``
    (``|`` by default: ``Nolan|Bigelow``) is a list; a column is a *list* column when
    named in ``list_columns`` or, by default, when any of its cells is a list, and a
    *categorical* column otherwise (an MPAA rate). Empty cells are missing. Every key
    must be a known item (one row each); items without a row get missing values.

    Returns the content frame (``item`` plus one column per content column; list
    columns hold a list per row) and the names of the list columns.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Item side file not found: {path}")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, "rb") as fh:
        first_line = fh.readline()
    try:
        first = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path.name} line 1: not valid utf-8 text; save the side file as UTF-8") from err
    head = [h.strip() for h in (first.rstrip("\r\n").split(sep) if sep == "\t" else next(csv.reader([first])))]
    key = next((k for k in SIDE_KEYS if k in head), None)
    if key is None:
        raise DataFormatError(f"{path.name} line 1: the header needs an item key column, one of {list(SIDE_KEYS)}; "
                              f"got {head}")
    content = [h for h in head if h != key]
    if not content or any(not h for h in content):
        raise DataFormatError(f"{path.name} line 1: the header must name each content column; got {head}")
    table = P.read_delimited(path, sep, tuple(head), header=True, quoted=sep == ",", encoding="utf-8")
    ids = P.to_int(table, key, lo=1)
    P.check_unique(table, {key: ids})
    P.check_known(table, key, ids, known_items, items_file)
    declared = set(list_columns or ())
    unknown = sorted(declared - set(content))
    if unknown:
        raise ValueError(f"list_columns {unknown} are not columns of {path.name} (columns: {content}).")
    out = pd.DataFrame({"item": ids})
    lists = []
    for column in content:
        cells = table.frame[column].fillna("").astype(str).str.strip()
        is_list = column in declared if list_columns is not None else bool(cells.str.contains(
            list_separator, regex=False).any())
        if is_list:
            out[column] = [[v.strip() for v in c.split(list_separator) if v.strip()] for c in cells]
            lists.append(column)
        else:
            out[column] = cells.where(cells != "", None)
    return out, lists


def _with_side_file(
    name: str,
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    items_file: str,
    side_file: str | Path | None,
    list_columns: Sequence[str] | None,
    list_separator: str,
) -> InteractionData:
    """The dataset, its items joined with the side file's content (declared as fields). A side
    column named like one of the loader's item columns replaces it: ``genres`` stays a list
    field and ``year`` the release year (it must hold whole years), with their usual encoding."""
    if side_file is None:
        return InteractionData(name, ratings, users, items)
    side, lists = read_item_side_file(side_file, items["item"].to_numpy(), list_columns, list_separator, items_file)
    replaced = [c for c in side.columns if c != "item" and c in items.columns]
    if "genres" in replaced and "genres" not in lists:  # one value per cell: a list of one
        side["genres"] = [[] if v is None else [v] for v in side["genres"]]
        lists.append("genres")
    if "year" in replaced:
        years = pd.to_numeric(side["year"], errors="coerce")
        bad = side["year"].notna() & (years.isna() | (years != years.round()))
        if bad.any():
            raise DataFormatError(f"{Path(side_file).name}: column year replaces {name}'s release years and must "
                                  f"hold whole years; item {int(side['item'][bad.idxmax()])} has "
                                  f"{side['year'][bad.idxmax()]!r}")
        side["year"] = years.astype("Int64")
    merged = items.drop(columns=replaced).merge(side, on="item", how="left")
    for column in lists:
        merged[column] = [v if isinstance(v, list) else [] for v in merged[column]]
    built_in = infer_fields(users, items)
    fields = list(built_in)
    known = {f.name for f in built_in}
    fields += [Field(c, "item", "list" if c in lists else "categorical") for c in side.columns
               if c != "item" and c not in known and c not in RESERVED_ITEM_COLUMNS]
    return InteractionData(name, ratings, users, merged[list(items.columns) + [c for c in side.columns
                                                                                if c not in items.columns]],
                           fields=tuple(fields))


def _movie_tags(path: Path, movies: np.ndarray) -> list[list[str]]:
    """Each movie's distinct user tags (lower-cased, sorted) from ``tags.csv``, in ``movies`` order."""
    tt = P.read_delimited(path, ",", ("userId", "movieId", "tag", "timestamp"), header=True, quoted=True)
    ids = P.to_int(tt, "movieId", lo=1)
    P.check_known(tt, "movieId", ids, movies, "movies.csv")
    tags: dict[int, set[str]] = {}
    for movie, tag in zip(ids.tolist(), tt.frame["tag"]):
        tag = " ".join(str(tag).lower().split())
        if tag:
            tags.setdefault(movie, set()).add(tag)
    return [sorted(tags.get(int(m), ())) for m in movies]


def load_dataset(name: str, data_dir: str | Path | None = None, **kwargs: Any) -> InteractionData:
    """Load a dataset by name: one of ``DATASETS``.

    ``synthetic`` passes ``kwargs`` to :func:`make_synthetic`; the MovieLens
    loaders take theirs (``item_side_file`` ...). Without ``data_dir`` a MovieLens
    release is looked for under ``$TFMETAREC_DATA_DIR`` (:func:`dataset_dir`:
    ``movielens-100k/``, ``movielens-1m/`` or ``ml-1m/``, ``ml-latest-small/``).
    """
    from tfmetarec.data.synthetic import make_synthetic

    if name == "synthetic":
        return make_synthetic(**kwargs)
    loaders: dict[str, Callable[..., InteractionData]] = {
        "movielens-100k": load_movielens_100k,
        "movielens-1m": load_movielens_1m,
        "movielens-latest-small": load_movielens_latest_small,
        "movielens-20m": load_movielens_20m,
        "movielens-25m": load_movielens_25m,
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if data_dir is None:
        data_dir = dataset_dir(name)
    return loaders[name](data_dir, **kwargs)
