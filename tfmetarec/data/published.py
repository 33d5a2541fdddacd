"""Published cold-start splits: use the split a paper used instead of drawing one.

Two layouts are read into one frame (columns ``user, item, rating, partition, role``):

* **a generic file** (CSV, or TSV when the name ends in ``.tsv``) with a header holding
  those five columns. ``partition`` is ``meta_train`` (or ``train``) or a scenario
  (``warm``, ``user_cold``, ``item_cold``, ``user_item_cold``); ``role`` is ``support``
  or ``query``. Meta-training rows may leave ``role`` empty (a query is then drawn at
  every step); a ``warm`` task without support rows takes its user's meta-training
  rows as support.
* **MeLU's state files** (Lee et al., KDD 2019): for each state, ``<state>.json`` maps a
  user ID to the list of item IDs in the order used and ``<state>_y.json`` the user to
  the ratings. ``warm_state`` is meta-training, ``user_cold_state``,
  ``item_cold_state`` and ``user_and_item_cold_state`` the three cold scenarios. Users
  with 13 to 100 ratings are kept; each user's items are shuffled (seeded) and the last
  ``query_size`` (10) are the query, the rest the support.

:func:`published_split` turns the frame into a :class:`ColdStartSplit` over a dataset,
checking that every ID has features and that new users and items never appear in
meta-training. Every error names the file (and line, for a generic file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.data import _parse as P
from tfmetarec.data.schema import DataFormatError, InteractionData
from tfmetarec.config import SCENARIOS, SplitConfig
from tfmetarec.data.splits import ColdStartSplit, assemble_split

COLUMNS = ("user", "item", "rating", "partition", "role")
PARTITIONS = ("meta_train", *SCENARIOS)
PARTITION_ALIASES = {"train": "meta_train", "meta-train": "meta_train", "user_and_item_cold": "user_item_cold"}
ROLES = ("support", "query")
MELU_STATES = {
    "warm_state": "meta_train",
    "user_cold_state": "user_cold",
    "item_cold_state": "item_cold",
    "user_and_item_cold_state": "user_item_cold",
}
NEW_USER_PARTITIONS = ("user_cold", "user_item_cold")
NEW_ITEM_PARTITIONS = ("item_cold", "user_item_cold")


def _line(index: int) -> int:
    return int(index) + 2  # header is line 1


def read_split_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read a generic split file into the published layout; bad rows fail with file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Split file {path} not found.")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(f"{path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} file: {err}") from err
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path} line 1: the header needs the columns {list(COLUMNS)}; missing {missing} "
                              f"(got {list(frame.columns)}).")
    if frame.empty:
        raise DataFormatError(f"{path}: the split holds no rows.")
    out = {}
    for column, kind in (("user", "integer"), ("item", "integer"), ("rating", "number")):
        text = frame[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        if kind == "integer":
            bad |= values.notna() & (values.fillna(0) % 1 != 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(f"{path} line {_line(i)}: {column} {frame[column].iloc[i]!r} is not "
                                  f"{'an integer' if kind == 'integer' else 'a number'}.")
        out[column] = values.to_numpy(dtype="int64" if kind == "integer" else "float32")
    partition = frame["partition"].str.strip().str.lower().map(lambda p: PARTITION_ALIASES.get(p, p))
    bad = ~partition.isin(PARTITIONS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{path} line {_line(i)}: partition {frame['partition'].iloc[i]!r} is not one of "
                              f"{list(PARTITIONS)}.")
    role = frame["role"].str.strip().str.lower()
    bad = ~role.isin((*ROLES, "")) | ((role == "") & (partition != "meta_train"))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{path} line {_line(i)}: role {frame['role'].iloc[i]!r} must be 'support' or "
                              f"'query'{' (or empty for meta_train rows)' if partition.iloc[i] == 'meta_train' else ''}.")
    result = pd.DataFrame({**out, "partition": partition.to_numpy(), "role": role.to_numpy()})
    _check_duplicates(result, lambda i: f"{path} line {_line(i)}")
    result.attrs["source"] = str(path)
    return result


def _check_duplicates(frame: pd.DataFrame, where) -> None:
    dup = frame.duplicated(["partition", "user", "item"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        row = frame.iloc[i]
        raise DataFormatError(f"{where(i)}: user {row['user']} rates item {row['item']} twice in partition "
                              f"{row['partition']!r}.")


def _load_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path} line {err.lineno} column {err.colno}: not valid JSON ({err.msg}).") from err
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err}).") from err
    if not isinstance(doc, dict):
        raise DataFormatError(f"{path}: expected a JSON object mapping user IDs to lists, got a "
                              f"{type(doc).__name__}.")
    return doc


def _as_int(value: object, what: str, where: str) -> int:
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number % 1:
        raise DataFormatError(f"{where}: {what} {value!r} is not an integer ID.")
    return int(number)


def melu_state_files(path: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """The MeLU state files under ``path`` (a folder, or one ``<state>.json`` file):
    partition -> (items file, ratings file). A state without its ``_y`` file is an error."""
    path = Path(path).expanduser()
    if path.is_file():
        state = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
        if state.endswith("_y"):
            state = state[:-2]
        if state not in MELU_STATES:
            raise DataFormatError(f"{path}: a MeLU split file is named <state>.json with state one of "
                                  f"{list(MELU_STATES)}.")
        candidates = {state: path.parent}
    elif path.is_dir():
        candidates = {s: path for s in MELU_STATES if (path / f"{s}.json").exists() or (path / f"{s}_y.json").exists()}
        if not candidates:
            raise FileNotFoundError(f"{path} holds none of MeLU's split files "
                                    f"({', '.join(s + '.json' for s in MELU_STATES)}).")
    else:
        raise FileNotFoundError(f"MeLU split {path} not found.")
    out = {}
    for state, folder in candidates.items():
        items, ratings = folder / f"{state}.json", folder / f"{state}_y.json"
        for needed in (items, ratings):
            if not needed.is_file():
                raise FileNotFoundError(f"MeLU split: {needed} is missing ({state} needs {items.name} and "
                                        f"{ratings.name}).")
        out[MELU_STATES[state]] = (items, ratings)
    return out


def read_melu_split(path: str | os.PathLike, seed: int = 0, query_size: int = 10, min_ratings: int = 13,
                    max_ratings: int = 100) -> pd.DataFrame:
    """Read MeLU's ``<state>.json`` / ``<state>_y.json`` files into the published layout.

    Users with ``min_ratings``..``max_ratings`` ratings are kept; each user's items are
    shuffled with a generator seeded by ``seed`` (users in file order) and the last
    ``query_size`` are the query.
    """
    if query_size < 1 or min_ratings <= query_size:
        raise ValueError(f"need 1 <= query_size < min_ratings, got {query_size} and {min_ratings}.")
    rng = np.random.default_rng(seed)
    parts = []
    for partition, (items_path, ratings_path) in melu_state_files(path).items():
        items_doc, ratings_doc = _load_json(items_path), _load_json(ratings_path)
        missing = [u for u in items_doc if u not in ratings_doc]
        extra = [u for u in ratings_doc if u not in items_doc]
        if missing or extra:
            raise DataFormatError(f"{ratings_path}: users {(missing or extra)[:5]} are in "
                                  f"{(items_path if missing else ratings_path).name} but not in "
                                  f"{(ratings_path if missing else items_path).name}.")
        users, items, ratings, roles = [], [], [], []
        for key, listed in items_doc.items():
            user = _as_int(key, "user", str(items_path))
            values = ratings_doc[key]
            if not isinstance(listed, list) or not isinstance(values, list):
                raise DataFormatError(f"{items_path}: user {key} must map to a list in both files.")
            if len(listed) != len(values):
                raise DataFormatError(f"{ratings_path}: user {key} has {len(values)} ratings for {len(listed)} items "
                                      f"in {items_path.name}.")
            if not min_ratings <= len(listed) <= max_ratings:
                continue
            row_items = [_as_int(v, "item", f"{items_path} (user {key})") for v in listed]
            try:
                row_ratings = np.asarray(values, dtype="float32")
            except (TypeError, ValueError):
                raise DataFormatError(f"{ratings_path}: user {key} has a rating that is not a number.") from None
            if not np.isfinite(row_ratings).all():
                raise DataFormatError(f"{ratings_path}: user {key} has a NaN or infinite rating.")
            order = rng.permutation(len(listed))
            users += [user] * len(listed)
            items += [row_items[i] for i in order]
            ratings += row_ratings[order].tolist()
            roles += ["support"] * (len(listed) - query_size) + ["query"] * query_size
        frame = pd.DataFrame({"user": np.asarray(users, "int64"), "item": np.asarray(items, "int64"),
                              "rating": np.asarray(ratings, "float32"), "partition": partition, "role": roles})
        _check_duplicates(frame, lambda i, p=items_path: str(p))
        parts.append(frame)
    result = pd.concat(parts, ignore_index=True)
    if result.empty:
        raise DataFormatError(f"{path}: no user has {min_ratings} to {max_ratings} ratings.")
    result.attrs["source"] = str(path)
    return result


MELU_ITEM_COLUMNS = ("movie_id", "title", "year", "rate", "released", "genre", "director", "writer", "actors", "plot",
                     "poster")
"""The ``::``-separated columns of MeLU's ``movies_extrainfos.dat`` (UTF-8, no header)."""
MELU_ITEM_FIELDS = ("rate", "genres", "director", "actors")
"""The item content MeLU embeds: the MPAA rate and the genre, director and actor lists."""
MELU_USER_FIELDS = ("gender", "age", "occupation", "zip")
MELU_LIST_SEPARATOR = ", "


def melu_item_side_file(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write MeLU's ``movies_extrainfos.dat`` as an item side file (TSV) that
    ``--item-side-file`` reads with ``--list-separator ", "``: ``item``, ``rate``, ``genres`` (its
    IMDb genres, which replace MovieLens' own), ``director`` (without MeLU's parenthesised
    remarks) and ``actors``. Returns ``out``. A malformed line is a :class:`DataFormatError`
    naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"MeLU item file {path} not found (expected movies_extrainfos.dat).")
    table = P.read_delimited(path, "::", MELU_ITEM_COLUMNS, encoding="utf-8")
    ids = P.to_int(table, "movie_id", lo=1)
    P.check_unique(table, {"movie_id": ids})
    frame = table.frame

    def cleaned(column: str, drop_remarks: bool = False) -> pd.Series:
        values = frame[column].fillna("").astype(str)
        if drop_remarks:
            values = values.str.replace(r"\([^()]*\)", "", regex=True)
        tabs = values.str.contains("\t", regex=False).to_numpy()
        if tabs.any():
            raise DataFormatError(f"{path.name} line {table.line(int(np.argmax(tabs)))}: a tab inside column {column}")
        return values.map(lambda cell: MELU_LIST_SEPARATOR.join(
            v.strip() for v in cell.split(MELU_LIST_SEPARATOR) if v.strip() and v.strip() != "N/A"))

    rate = frame["rate"].fillna("").astype(str).str.strip().replace("N/A", "")
    side = pd.DataFrame({"item": ids, "rate": rate, "genres": cleaned("genre"),
                         "director": cleaned("director", drop_remarks=True), "actors": cleaned("actors")})
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    side.to_csv(out, sep="\t", index=False, quoting=3)  # csv.QUOTE_NONE
    return out


def is_melu_split(path: str | os.PathLike) -> bool:
    """True for a folder of MeLU state files or one ``<state>.json`` / ``<state>_y.json`` file."""
    path = Path(path).expanduser()
    if path.is_dir():
        return True
    name = path.name[:-5] if path.name.endswith(".json") else ""
    return name.removesuffix("_y") in MELU_STATES


def read_split(path: str | os.PathLike, config: SplitConfig = SplitConfig()) -> pd.DataFrame:
    """A split file in either layout (MeLU's for a folder or a ``<state>.json``, generic otherwise)."""
    if is_melu_split(path):
        return read_melu_split(path, seed=config.seed, query_size=config.query_size,
                               min_ratings=config.min_user_ratings, max_ratings=config.max_user_ratings)
    return read_split_file(path)


def _ids(frame: pd.DataFrame, column: str, partitions) -> np.ndarray:
    return np.unique(frame.loc[frame.partition.isin(partitions), column].to_numpy(dtype=np.int64))


def _check_against_ratings(frame: pd.DataFrame, data: InteractionData, where: str) -> None:
    """Every split row is a rating of ``data``, with the same value: a pair the ratings do not hold,
    or a rating that differs from theirs (99 on a 1-5 scale, a stale file), is an error naming the
    row (its position among the split's rows) and both values."""
    rated = frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan)
    lo, hi = float(data.ratings["rating"].min()), float(data.ratings["rating"].max())
    outside = ~((rated >= lo) & (rated <= hi))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataFormatError(f"{where}, row {i + 1}: user {frame['user'].iloc[i]} item {frame['item'].iloc[i]} has "
                              f"rating {rated[i]:g}, outside the data's ratings [{lo:g}, {hi:g}] "
                              f"({int(outside.sum())} row(s) are).")
    keys = pd.MultiIndex.from_frame(data.ratings[["user", "item"]].astype("int64"))
    at = keys.get_indexer(pd.MultiIndex.from_frame(frame[["user", "item"]].astype("int64")))
    if (at < 0).any():
        i = int(np.flatnonzero(at < 0)[0])
        raise DataFormatError(f"{where}, row {i + 1}: user {frame['user'].iloc[i]} never rated item "
                              f"{frame['item'].iloc[i]} in the {data.name} ratings ({int((at < 0).sum())} row(s) "
                              "name pairs the ratings do not hold).")
    theirs = data.ratings["rating"].to_numpy(dtype=np.float64)[at]
    differ = ~np.isclose(theirs, rated)
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise DataFormatError(f"{where}, row {i + 1}: user {frame['user'].iloc[i]} item {frame['item'].iloc[i]} has "
                              f"rating {rated[i]:g} in the split but {theirs[i]:g} in the {data.name} ratings "
                              f"({int(differ.sum())} row(s) differ).")


def published_split(data: InteractionData, frame: pd.DataFrame, config: SplitConfig = SplitConfig(),
                    source: str | None = None) -> ColdStartSplit:
    """A :class:`ColdStartSplit` over ``data`` from a frame in the published layout.

    New users are those of ``user_cold`` / ``user_item_cold``, new items those of
    ``item_cold`` / ``user_item_cold``; every other item of ``data`` is existing. Fails,
    naming the source and a few IDs, when an ID has no row in ``data`` or a new user or
    item appears in meta-training (or an existing scenario).
    """
    where = source or frame.attrs.get("source", "the published split")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{where}: a published split needs the columns {list(COLUMNS)}; missing {missing}.")
    frame = frame[list(COLUMNS)].copy()
    frame["partition"] = frame["partition"].map(lambda p: PARTITION_ALIASES.get(p, p))
    if not frame["partition"].isin(PARTITIONS).all():
        raise DataFormatError(f"{where}: unknown partitions {sorted(set(frame.partition) - set(PARTITIONS))}.")
    frame["role"] = frame["role"].fillna("").astype(str)
    for column, known in (("user", data.users["user"]), ("item", data.items["item"])):
        unknown = np.setdiff1d(frame[column].to_numpy(dtype=np.int64), known.to_numpy(dtype=np.int64))
        if len(unknown):
            raise DataFormatError(f"{where}: {column} IDs {unknown[:5].tolist()} ({len(unknown)} in all) are not in "
                                  f"the {data.name} data, so they have no features.")
    _check_against_ratings(frame, data, where)
    new_users = _ids(frame, "user", NEW_USER_PARTITIONS)
    new_items = _ids(frame, "item", NEW_ITEM_PARTITIONS)
    for partitions, column, new, what in (
        (("meta_train", "warm", "item_cold"), "user", new_users, "new users (of user_cold/user_item_cold)"),
        (("meta_train", "warm", "user_cold"), "item", new_items, "new items (of item_cold/user_item_cold)"),
    ):
        for partition in partitions:
            leaked = np.intersect1d(_ids(frame, column, (partition,)), new)
            if len(leaked):
                raise DataFormatError(f"{where}: {what} {leaked[:5].tolist()} also appear in {partition}; a new "
                                      f"{column} never appears in meta-training or an existing-{column} scenario.")
    existing_users = _ids(frame, "user", ("meta_train", "warm", "item_cold"))
    all_items = data.items["item"].to_numpy(dtype=np.int64)
    existing_items = np.setdiff1d(all_items, new_items)
    tidy = frame.sort_values(["partition", "user", "item"], kind="stable", ignore_index=True)
    partitions = {s: tidy[tidy.partition == s].drop(columns="partition").reset_index(drop=True) for s in SCENARIOS}
    meta_train = tidy[tidy.partition == "meta_train"].drop(columns="partition").reset_index(drop=True)
    if meta_train.empty:
        raise DataFormatError(f"{where}: no meta_train rows: a published split needs ratings to meta-train on.")
    return ColdStartSplit(
        config=config,
        existing_users=existing_users,
        new_users=new_users,
        existing_items=np.sort(existing_items),
        new_items=new_items,
        meta_train=meta_train,
        partitions=partitions,
        published=tidy,
    )


__all__ = [
    "load_split",
    "COLUMNS",
    "MELU_STATES",
    "PARTITIONS",
    "is_melu_split",
    "melu_state_files",
    "published_split",
    "read_melu_split",
    "read_split",
    "read_split_file",
]


def load_split(directory: str | os.PathLike, data: InteractionData) -> ColdStartSplit:
    """Rebuild a split saved by :meth:`ColdStartSplit.save` over ``data`` (the dataset it was made
    from): a drawn split from its ID lists, a published one from its saved rows."""
    folder = Path(directory)
    try:
        doc = json.loads((folder / "split.json").read_text(encoding="utf-8"))
        config = SplitConfig.from_dict(doc["config"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{folder / 'split.json'} is not a saved split: {err}") from err
    if doc.get("published"):
        return published_split(data, read_split_file(folder / "published.csv.gz"), config)
    keys = ("existing_users", "new_users", "existing_items", "new_items")
    ids = {k: np.asarray(doc[k], dtype=np.int64) for k in keys}
    warm = pd.MultiIndex.from_arrays([np.asarray(v, dtype=np.int64) for v in doc["warm"]])
    return assemble_split(data, config, **ids, warm_pairs=warm)
