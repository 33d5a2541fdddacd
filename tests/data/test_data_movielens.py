"""Loaders: small hand-written files in every MovieLens format, malformed inputs, real data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import (
    DataFormatError,
    InteractionData,
    cold_start_split,
    load_dataset,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest_small,
    movielens_100k_dir,
)

FLAGS = ["0"] * 19


def _flags(*on: int) -> str:
    row = list(FLAGS)
    for j in on:
        row[j] = "1"
    return "|".join(row)


U_DATA = [
    "1\t10\t5\t881250949",
    "1\t11\t3\t881250950",
    "2\t10\t1\t881250951",
    "2\t12\t4\t881250952",
    "3\t11\t2\t881250953",
]
U_USER = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|17|M|student|T8H1N"]
U_ITEM = [
    f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}",
    f"11|Café Society (1997)|02-Feb-1997||http://y|{_flags(8)}",
    f"12|unknown|||http://z|{_flags(0)}",
]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def ml100k(root: Path, data: list[str] = U_DATA, user: list[str] = U_USER, item: list[str] = U_ITEM) -> Path:
    write(root / "u.data", data)
    write(root / "u.user", user, "latin-1")
    write(root / "u.item", item, "latin-1")
    return root


def ml1m(root: Path, ratings: list[str] | None = None) -> Path:
    write(root / "ratings.dat", ratings or ["1::1193::5::978300760", "1::661::3::978302109", "2::1193::4::978298413"])
    write(root / "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"], "latin-1")
    write(
        root / "movies.dat",
        ["1193::One Flew Over the Cuckoo's Nest (1975)::Drama", "661::Amélie (2001)::Comedy|Romance", "5::Untitled::"],
        "latin-1",
    )
    return root


def latest(root: Path, ratings: list[str] | None = None, movies: list[str] | None = None) -> Path:
    write(
        root / "ratings.csv",
        ratings or ["userId,movieId,rating,timestamp", "1,1,4.0,964982703", "1,3,0.5,964981247", "7,2,3.5,1445714835"],
    )
    write(
        root / "movies.csv",
        movies
        or [
            "movieId,title,genres",
            "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
            '2,"American President, The (1995)",Comedy|Drama|Romance',
            "3,Black Mirror,(no genres listed)",
        ],
    )
    return root


def error_of(call, *args) -> str:
    with pytest.raises(DataFormatError) as info:
        call(*args)
    return str(info.value)


# --- well-formed files ------------------------------------------------------------------------


def test_load_100k_small(tmp_path: Path) -> None:
    data = load_movielens_100k(ml100k(tmp_path))
    assert isinstance(data, InteractionData) and data.name == "movielens-100k"
    assert (len(data.ratings), len(data.users), len(data.items)) == (5, 3, 3)
    dtypes = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}
    assert dict(data.ratings.dtypes.astype(str)) == dtypes
    assert data.ratings["rating"].between(1, 5).all()
    assert data.users["age"].dtype == np.int64 and data.users["zip"].tolist() == ["85711", "94043", "T8H1N"]
    items = data.items.set_index("item")
    assert items.loc[10, "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc[12, "genres"] == ["unknown"]
    assert items.loc[11, "title"] == "Café Society (1997)"  # decoded from latin-1
    assert str(data.items["year"].dtype) == "Int64"
    assert items.loc[10, "year"] == 1995 and items.loc[11, "year"] == 1997 and pd.isna(items.loc[12, "year"])


def test_load_1m_small(tmp_path: Path) -> None:
    data = load_movielens_1m(ml1m(tmp_path))
    assert (len(data.ratings), len(data.users), len(data.items)) == (3, 2, 3)
    users = data.users.set_index("user")
    assert users.loc[1, "age"] == 1 and users.loc[2, "age"] == 56
    assert users.loc[1, "occupation"] == "K-12 student" and users.loc[2, "occupation"] == "self-employed"
    items = data.items.set_index("item")
    assert items.loc[661, "title"] == "Amélie (2001)" and items.loc[661, "year"] == 2001
    assert items.loc[661, "genres"] == ["Comedy", "Romance"]
    assert items.loc[5, "genres"] == [] and pd.isna(items.loc[5, "year"])
    assert data.ratings["rating"].dtype == np.float32


def test_load_latest_small(tmp_path: Path) -> None:
    data = load_movielens_latest_small(latest(tmp_path))
    assert (len(data.ratings), len(data.users), len(data.items)) == (3, 2, 3)
    assert list(data.users.columns) == ["user"] and data.users["user"].tolist() == [1, 7]
    assert sorted(data.ratings["rating"].tolist()) == [0.5, 3.5, 4.0]
    items = data.items.set_index("item")
    assert items.loc[2, "title"] == "American President, The (1995)" and items.loc[2, "year"] == 1995
    assert items.loc[3, "genres"] == [] and pd.isna(items.loc[3, "year"])
    assert len(items.loc[1, "genres"]) == 5


def test_blank_lines_and_crlf_keep_line_numbers(tmp_path: Path) -> None:
    root = ml100k(tmp_path)
    (root / "u.data").write_bytes(b"1\t10\t5\t881250949\r\n\r\n1\t11\t3\t881250950\r\n2\t10\tx\t1\r\n")
    assert "u.data line 4:" in error_of(load_movielens_100k, root)


def test_load_dataset_dispatch(tmp_path: Path) -> None:
    assert load_dataset("synthetic", num_users=50, num_items=40, seed=1).name == "synthetic"
    assert len(load_dataset("movielens-1m", ml1m(tmp_path / "a")).ratings) == 3
    # a parent folder holding the conventionally named release folder also works
    latest(tmp_path / "b" / "ml-latest-small")
    assert len(load_dataset("movielens-latest-small", tmp_path / "b").ratings) == 3
    with pytest.raises(FileNotFoundError, match="MovieLens 1M directory not found"):
        load_dataset("movielens-1m")  # looked for under $TFMETAREC_DATA_DIR, which lacks it
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("netflix")


def test_default_data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TFMETAREC_DATA_DIR", str(tmp_path))
    assert movielens_100k_dir() == tmp_path / "movielens-100k"
    ml100k(tmp_path / "movielens-100k")
    assert len(load_dataset("movielens-100k").ratings) == 5
    ml1m(tmp_path / "movielens-1m")
    assert len(load_dataset("movielens-1m").ratings) == 3
    latest(tmp_path / "ml-latest-small")
    assert len(load_dataset("movielens-latest-small").ratings) == 3


SIDE = ["item,rate,directors,actors", "1193,R,Forman,Nicholson|Fletcher", '661,"PG-13",Jeunet,"Tautou|Kassovitz"']


def test_an_item_side_file_adds_categorical_and_list_fields(tmp_path: Path) -> None:
    root = ml1m(tmp_path / "ml-1m")
    data = load_movielens_1m(root, item_side_file=write(tmp_path / "side.csv", SIDE))
    by_item = data.items.set_index("item")
    assert by_item.loc[1193, "rate"] == "R" and by_item.loc[661, "actors"] == ["Tautou", "Kassovitz"]
    assert pd.isna(by_item.loc[5, "rate"]) and by_item.loc[5, "actors"] == []  # no side row: missing
    kinds = {f.name: f.kind for f in data.fields if f.side == "item"}
    assert kinds == {"year": "categorical", "genres": "list", "rate": "categorical", "directors": "categorical",
                     "actors": "list"}
    forced = load_movielens_1m(root, item_side_file=tmp_path / "side.csv", list_columns=["directors", "actors"])
    assert {f.name: f.kind for f in forced.fields}["directors"] == "list"
    tsv = write(tmp_path / "side.tsv", ["movieId\trate", "1193\tR", "661\t"])
    assert pd.isna(load_dataset("movielens-1m", root, item_side_file=tsv).items.set_index("item").loc[661, "rate"])


def test_a_side_column_named_like_a_built_in_one_replaces_it(tmp_path: Path) -> None:
    """MeLU's files: IMDb genres replace MovieLens' own, lists written with ", " in a TSV."""
    root = ml1m(tmp_path / "ml-1m")
    side = write(tmp_path / "side.tsv", ["item\tgenres\tyear\tdirector", "1193\tDrama, Biography\t1975\tForman",
                                         "661\tComedy\t2001\tJeunet, Caro"])
    data = load_movielens_1m(root, item_side_file=side, list_separator=", ")
    by_item = data.items.set_index("item")
    assert by_item.loc[1193, "genres"] == ["Drama", "Biography"] and by_item.loc[661, "genres"] == ["Comedy"]
    assert by_item.loc[5, "genres"] == [] and pd.isna(by_item.loc[5, "year"])  # no side row: missing
    assert by_item.loc[661, "director"] == ["Jeunet", "Caro"]
    fields = [(f.name, f.kind, f.transform) for f in data.fields if f.side == "item"]
    assert fields == [("year", "categorical", "year_bucket"), ("genres", "list", None), ("director", "list", None)]
    bad = write(tmp_path / "bad.tsv", ["item\tyear", "1193\tseventies"])
    with pytest.raises(DataFormatError, match=r"bad.tsv: column year .* item 1193 has 'seventies'"):
        load_movielens_1m(root, item_side_file=bad)


def test_fields_are_kept_or_dropped_by_name_and_the_columns_stay(tmp_path: Path) -> None:
    from tfmetarec.data import select_fields

    data = load_movielens_1m(ml1m(tmp_path / "ml-1m"))
    dropped = select_fields(data, drop=["year", "zip"])
    assert [f.name for f in dropped.fields] == ["gender", "age", "occupation", "genres"]
    assert "year" in dropped.items.columns and dropped.ratings is data.ratings  # shared, not copied
    assert [f.name for f in select_fields(data, keep=["genres", "age"]).fields] == ["age", "genres"]
    with pytest.raises(DataFormatError, match=r"no field\(s\) \['director'\] to keep or drop; its fields are "):
        select_fields(data, drop=["director"])


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        (["item,rate", "1193,R", "1193,PG"], r"side.csv line 3: duplicate entry for item 1193"),
        (["item,rate", "1193,R", "4242,PG"], r"side.csv line 3: item 4242 does not appear in movies.dat"),
        (["item,rate", "x,R"], r"side.csv line 2: item 'x' is not an integer"),
        (["item,rate", "1193,R,extra"], r"side.csv line 2: expected 2 comma-separated fields"),
        (["film,rate", "1193,R"], r"side.csv line 1: the header needs an item key column"),
    ],
)
def test_a_malformed_side_file_names_its_file_and_line(tmp_path: Path, lines: list[str], pattern: str) -> None:
    root = ml1m(tmp_path / "ml-1m")
    with pytest.raises(DataFormatError, match=pattern):
        load_movielens_1m(root, item_side_file=write(tmp_path / "side.csv", lines))


def test_ratings_without_timestamps_load_but_refuse_a_time_split() -> None:
    from tfmetarec.data import SplitConfig, make_synthetic

    full = make_synthetic(num_users=60, num_items=40, seed=1)
    bare = InteractionData("synthetic", full.ratings.drop(columns="timestamp"), full.users, full.items)
    assert not bare.has_timestamps and full.has_timestamps
    assert len(cold_start_split(bare, SplitConfig(seed=1)).meta_train)
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        cold_start_split(bare, SplitConfig(method="time"))


# --- malformed files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "bad", "pattern"),
    [
        (3, "2,10,1,881250951", r"u\.data line 3: expected 4 tab-separated fields .*found 1"),  # wrong separator
        (2, "1\t11\t3", r"u\.data line 2: expected 4 tab-separated fields .*found 3"),  # missing column
        (4, "2\t12\tabc\t881250952", r"u\.data line 4: rating 'abc' is not a number"),
        (5, "3\t11\t7\t881250953", r"u\.data line 5: rating 7 is outside"),
        (1, "x1\t10\t5\t881250949", r"u\.data line 1: user 'x1' is not an integer"),
        (2, "1\t10\t4\t881250950", r"u\.data line 2: duplicate entry for user 1, item 10"),
        (5, "3\t99\t2\t881250953", r"u\.data line 5: item 99 does not appear in u\.item"),
    ],
)
def test_100k_malformed_ratings(tmp_path: Path, line: int, bad: str, pattern: str) -> None:
    lines = list(U_DATA)
    lines[line - 1] = bad
    assert re.search(pattern, error_of(load_movielens_100k, ml100k(tmp_path, data=lines)))


def test_100k_malformed_side_files(tmp_path: Path) -> None:
    bad_user = [*U_USER[:2], "3|seventeen|M|student|T8H1N"]
    assert "u.user line 3: age 'seventeen'" in error_of(load_movielens_100k, ml100k(tmp_path / "u", user=bad_user))
    bad_item = [U_ITEM[0], U_ITEM[1].replace("|http://y|0|", "|http://y|2|"), U_ITEM[2]]
    assert "u.item line 2: g0 2 is outside" in error_of(load_movielens_100k, ml100k(tmp_path / "i", item=bad_item))
    short_item = [U_ITEM[0], U_ITEM[1], "12|unknown|||http://z"]
    assert "u.item line 3: expected 24" in error_of(load_movielens_100k, ml100k(tmp_path / "s", item=short_item))


def test_1m_malformed(tmp_path: Path) -> None:
    wrong_sep = ["1::1193::5::978300760", "1:661:3:978302109"]
    msg = error_of(load_movielens_1m, ml1m(tmp_path / "a", wrong_sep))
    assert "ratings.dat line 2: expected 4 '::'-separated" in msg
    nan_rating = ["1::1193::5::978300760", "1::661::3::978302109", "2::1193::four::978298413"]
    msg = error_of(load_movielens_1m, ml1m(tmp_path / "b", nan_rating))
    assert "ratings.dat line 3: rating 'four' is not a number" in msg
    root = ml1m(tmp_path / "c")
    write(root / "users.dat", ["1::F::1::10::48067", "2::M::57::16::70072"])
    assert "users.dat line 2: age code 57" in error_of(load_movielens_1m, root)


def test_latest_malformed(tmp_path: Path) -> None:
    no_rating = ["userId,movieId,timestamp", "1,1,964982703"]
    msg = error_of(load_movielens_latest_small, latest(tmp_path / "a", ratings=no_rating))
    assert "ratings.csv line 1: header lacks column(s) ['rating']" in msg
    semicolons = ["userId;movieId;rating;timestamp", "1;1;4.0;964982703"]
    msg = error_of(load_movielens_latest_small, latest(tmp_path / "b", ratings=semicolons))
    assert "ratings.csv line 1: header lacks" in msg
    quarter = ["userId,movieId,rating,timestamp", "1,1,4.0,964982703", "1,2,3.25,964982704"]
    assert "ratings.csv line 3: rating '3.25' is not a half-star" in error_of(
        load_movielens_latest_small, latest(tmp_path / "c", ratings=quarter)
    )
    extra = ["movieId,title,genres", "1,Toy Story (1995),Comedy", "2,American President, The (1995),Drama"]
    assert "movies.csv line 3: expected 3 comma-separated" in error_of(
        load_movielens_latest_small, latest(tmp_path / "d", movies=extra)
    )


def test_missing_directory_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as info:
        load_movielens_100k(missing)
    assert "u.data" in str(info.value)
    root = ml100k(tmp_path / "partial")
    (root / "u.item").unlink()
    with pytest.raises(FileNotFoundError, match="missing u.item"):
        load_dataset("movielens-100k", root)


# --- the real MovieLens 100K --------------------------------------------------------------------


def test_real_movielens_100k() -> None:
    path = movielens_100k_dir()
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {path}; set TFMETAREC_DATA_DIR")
    data = load_dataset("movielens-100k")
    assert (len(data.ratings), len(data.users), len(data.items)) == (100_000, 943, 1682)
    counts = data.ratings["rating"].value_counts().sort_index()
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    split = cold_start_split(data)
    assert all(len(frame) > 0 for frame in split.partitions.values())


def test_latest_small_tags_become_item_content(tmp_path: Path) -> None:
    from tfmetarec.data import FeatureEncoder

    root = latest(tmp_path / "a")
    write(root / "tags.csv", ["userId,movieId,tag,timestamp", "1,1,Pixar,1", "7,1,  pixar ,2",
                              '1,2,"politics, satire",3', "7,1,funny,4"])
    items = load_movielens_latest_small(root).items.set_index("item")
    assert items.loc[1, "tags"] == ["funny", "pixar"] and items.loc[2, "tags"] == ["politics, satire"]
    assert items.loc[3, "tags"] == []
    enc = FeatureEncoder().fit(load_movielens_latest_small(root))
    assert {"pixar", "funny", "politics, satire"} <= set(enc.vocabulary("item", "tags"))
    assert [f.name for f in enc.spec.item_fields] == ["year", "genres", "tags"]

    root = latest(tmp_path / "b")
    write(root / "tags.csv", ["userId,movieId,tag,timestamp", "1,1,ok,1", "1,99,ghost,2"])
    assert "tags.csv line 3: movieId 99 does not appear in movies.csv" in error_of(load_movielens_latest_small, root)


def test_text_re_saved_as_utf8_reads_right_and_empty_ratings_are_refused(tmp_path: Path) -> None:
    root = ml100k(tmp_path / "utf8")
    write(root / "u.item", U_ITEM, encoding="utf-8")  # someone re-saved it: no mojibake either way
    assert load_movielens_100k(root).items.set_index("item").loc[11, "title"] == "Café Society (1997)"
    write(root / "u.data", [])
    assert "movielens-100k: there are no ratings" in error_of(load_movielens_100k, root)
