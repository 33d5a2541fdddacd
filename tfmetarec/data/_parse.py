"""Strict, fast parsing of delimited text files with line-accurate errors."""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tfmetarec.data.schema import DataFormatError

_SEP_NAMES = {"\t": "tab", "|": "'|'", "::": "'::'", ",": "comma"}


@dataclass(frozen=True)
class Table:
    """String cells of one file plus the 1-based source line of every row.

    ``lines`` is ``None`` when the file was read by the fast path (no blank lines
    counted); the line of a row is then found, on error only, by re-reading ``path``."""

    file: str
    frame: pd.DataFrame
    lines: np.ndarray | None
    path: Path | None = None
    header: bool = False

    def line(self, row: int) -> int:
        """The 1-based source line of ``row``."""
        if self.lines is not None:
            return int(self.lines[row])
        return _line_of_row(self.path, row, self.header)

    def cell(self, row: int, col: str) -> str:
        """The text of one cell (numbers formatted back, missing as empty)."""
        value = self.frame[col].iloc[row]
        return "" if pd.isna(value) else str(value).strip()

    def error(self, row: int, message: str) -> DataFormatError:
        return DataFormatError(f"{self.file} line {self.line(row)}: {message}")


def _line_of_row(path: Path | None, row: int, header: bool) -> int:
    """The 1-based line holding data row ``row`` (blank lines and the header skipped)."""
    if path is None:
        raise ValueError("A table read without line numbers needs its path to locate a row.")
    seen = -1 if header else 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                if seen == row:
                    return number
                seen += 1
    raise IndexError(f"{path.name} has no data row {row}.")


FAST_BYTES = 1 << 20
"""Files at least this large whose columns are all numeric skip the line-by-line reader."""


def _read_numeric_fast(path: Path, sep: str, names: tuple[str, ...], encoding: str | tuple[str, ...],
                       header: bool) -> Table | None:
    """A well-formed, single-character-separated, all-numeric file read by pandas' C parser
    straight from disk (no Python object per row); ``None`` when anything looks off, so the
    careful reader runs and reports the exact line."""
    encoding = encoding if isinstance(encoding, str) else encoding[-1]  # numbers read alike in every candidate
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode(encoding).lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    columns = [h.strip() for h in text.split(sep)] if header else list(names)
    if header and (not text.strip() or any(n not in columns for n in names) or len(set(columns)) != len(columns)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # rows longer than the header
            frame = pd.read_csv(path, sep=sep, header=None, names=columns, index_col=False,
                                skiprows=1 if header else 0, encoding=encoding, engine="c",
                                quoting=csv.QUOTE_NONE, skip_blank_lines=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning):
        return None
    if any(not pd.api.types.is_numeric_dtype(frame[c].dtype) for c in names) or frame.isna().to_numpy().any():
        return None  # a short row, an empty or a non-numeric cell: let the careful reader name it
    return Table(path.name, frame[list(names)], None, path, header)


MOVIELENS_TEXT = ("utf-8", "latin-1")
"""How MovieLens' text files are read: strict UTF-8 first (a file someone re-saved as UTF-8),
else latin-1, their published encoding (latin-1 accepts any bytes, so it must come last)."""


def _decode(path: Path, encoding: str | tuple[str, ...]) -> str:
    """``path``'s text in the first of ``encoding`` (one or several, tried in order) that decodes it
    strictly; none: an error naming the line where the last one failed and every one tried."""
    data = path.read_bytes()
    tried = (encoding,) if isinstance(encoding, str) else tuple(encoding)
    for k, name in enumerate(tried):
        try:
            return data.decode(name)
        except UnicodeDecodeError as exc:
            if k == len(tried) - 1:
                line = data.count(b"\n", 0, exc.start) + 1
                raise DataFormatError(f"{path.name} line {line}: not valid {' or '.join(tried)} text") from exc
    raise AssertionError("unreachable")


def read_delimited(
    path: Path,
    sep: str,
    names: tuple[str, ...],
    encoding: str | tuple[str, ...] = "utf-8",
    header: bool = False,
    quoted: bool = False,
    numeric: tuple[str, ...] = (),
) -> Table:
    """Read ``path`` into string columns ``names``, checking every row's field count.

    With ``header`` the first line must name (at least) ``names``; columns are
    then picked by name. ``quoted`` enables CSV quoting (slower, pure Python).
    Columns in ``numeric`` come back as numbers when every cell parses (a fast
    path for :func:`to_int` / :func:`to_float`); all others are strings. A large
    file (:data:`FAST_BYTES`) of numeric columns only (a ratings file) goes straight
    to pandas' C parser with bounded memory; on any irregularity it is re-read here
    line by line, so errors are the same either way.
    """
    if (not quoted and len(sep) == 1 and set(names) <= set(numeric) and path.is_file()
            and path.stat().st_size >= FAST_BYTES):
        fast = _read_numeric_fast(path, sep, names, encoding, header)
        if fast is not None:
            return fast
    text = _decode(path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    sep_name = _SEP_NAMES.get(sep, repr(sep))
    if quoted:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        rows: list[list[str]] = []
        numbers: list[int] = []
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                rows.append(fields)
                numbers.append(reader.line_num)
        cells = rows
    else:
        raw = [line.rstrip("\r") for line in text.split("\n")]
        numbers = [i + 1 for i, line in enumerate(raw) if line.strip()]
        cells = [raw[n - 1] for n in numbers]

    columns = list(names)
    if header:
        if not cells:
            raise DataFormatError(f"{path.name} line 1: missing header {list(names)}")
        head = cells[0] if quoted else cells[0].split(sep)
        head = [h.strip() for h in head]
        missing = [n for n in names if n not in head]
        if missing:
            raise DataFormatError(
                f"{path.name} line {numbers[0]}: header lacks column(s) {missing} "
                f"(expected {sep_name}-separated {list(names)}, got {head})"
            )
        columns, cells, numbers = head, cells[1:], numbers[1:]

    width = len(columns)
    counts = np.fromiter((len(c) if quoted else c.count(sep) + 1 for c in cells), dtype=np.int64, count=len(cells))
    bad = np.flatnonzero(counts != width)
    if bad.size:
        i = int(bad[0])
        hint = " (wrong separator?)" if counts[i] == 1 else ""
        raise DataFormatError(
            f"{path.name} line {numbers[i]}: expected {width} {sep_name}-separated fields "
            f"({', '.join(columns)}), found {counts[i]}{hint}"
        )

    if quoted:
        frame = pd.DataFrame(cells, columns=columns, dtype="str")
    elif not cells:
        frame = pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
    else:
        body = "\n".join(cells)
        one = sep
        if len(sep) > 1:
            one = "\x1f" if "\x1f" not in body else "\x1e"
            body = body.replace(sep, one)
        frame = pd.read_csv(
            io.StringIO(body),
            sep=one,
            header=None,
            names=columns,
            dtype={c: "str" for c in columns if c not in numeric},
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
            skip_blank_lines=False,
        )
    if len(frame) != len(cells):
        raise DataFormatError(f"{path.name}: parsed {len(frame)} rows from {len(cells)} lines")
    frame = frame[list(names)]
    return Table(path.name, frame.reset_index(drop=True), np.asarray(numbers, dtype=np.int64))


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _numbers(cells: pd.Series) -> np.ndarray:
    """Cells as float64; NaN where a cell is not a plain decimal number."""
    if pd.api.types.is_numeric_dtype(cells.dtype):
        return cells.to_numpy(dtype="float64")
    try:  # fast path: every cell parses
        return cells.to_numpy(dtype=object).astype(np.float64)
    except (TypeError, ValueError):
        pass
    num = pd.to_numeric(cells.str.strip(), errors="coerce")
    return num.to_numpy(dtype="float64", na_value=np.nan)


def to_int(table: Table, col: str, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Column ``col`` as int64, with a line-accurate error for any bad cell."""
    cells = table.frame[col]
    num = _numbers(cells)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        i = _first(bad)
        raise table.error(i, f"{col} {table.cell(i, col)!r} is not an integer")
    _check_range(table, col, num, lo, hi)
    return num.astype(np.int64)


def to_float(table: Table, col: str, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Column ``col`` as float64, with a line-accurate error for any bad cell."""
    cells = table.frame[col]
    num = _numbers(cells)
    bad = ~np.isfinite(num)
    if bad.any():
        i = _first(bad)
        raise table.error(i, f"{col} {table.cell(i, col)!r} is not a number")
    _check_range(table, col, num, lo, hi)
    return num


def _check_range(table: Table, col: str, num: np.ndarray, lo: float | None, hi: float | None) -> None:
    low = np.full(num.shape, False) if lo is None else num < lo
    high = np.full(num.shape, False) if hi is None else num > hi
    out = low | high
    if out.any():
        i = _first(out)
        bounds = f"{'-inf' if lo is None else lo}..{'inf' if hi is None else hi}"
        raise table.error(i, f"{col} {table.cell(i, col)} is outside the range {bounds}")


def check_unique(table: Table, keys: dict[str, np.ndarray]) -> None:
    """Error on the first row repeating an earlier row's key."""
    dup = pd.DataFrame(keys).duplicated().to_numpy()
    if dup.any():
        i = _first(dup)
        what = ", ".join(f"{k} {int(v[i])}" for k, v in keys.items())
        raise table.error(i, f"duplicate entry for {what}")


def check_known(table: Table, col: str, values: np.ndarray, known: np.ndarray, source: str) -> None:
    """Error on the first row whose ``col`` value is missing from ``known``."""
    unknown = ~np.isin(values, known)
    if unknown.any():
        i = _first(unknown)
        raise table.error(i, f"{col} {int(values[i])} does not appear in {source}")
