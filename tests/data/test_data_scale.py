"""Data at scale: the ratings.csv fast reader (same frames, same line-accurate errors as the
careful one, bounded memory) and the sampled synthetic generator (memory grows with the
ratings, not users x items)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import DataFormatError, load_dataset, load_movielens_25m, load_movielens_latest_small, make_synthetic
from tfmetarec.data import _parse as P

MOVIES = ["movieId,title,genres", '1,"Heat, The (1995)",Action|Crime', "2,Up (2009),Animation", "3,X (2019),Drama"]


def _release(root: Path, ratings: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.csv").write_text("\n".join(ratings) + "\n", encoding="utf-8")
    (root / "movies.csv").write_text("\n".join(MOVIES) + "\n", encoding="utf-8")
    return root


def _rows(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    users = rng.permutation(np.arange(1, n + 1))
    return ["userId,movieId,rating,timestamp"] + [
        f"{u},{int(rng.integers(1, 4))},{rng.integers(1, 11) / 2:.1f},{1_500_000_000 + i}" for i, u in enumerate(users)]


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(P, "FAST_BYTES", 0)  # every all-numeric file takes the fast path


def test_the_fast_reader_gives_the_careful_readers_frame(tmp_path, monkeypatch):
    root = _release(tmp_path / "ml-25m", _rows(3000))
    careful = load_movielens_latest_small(root)
    monkeypatch.setattr(P, "FAST_BYTES", 0)
    calls = []
    real = P._read_numeric_fast
    monkeypatch.setattr(P, "_read_numeric_fast", lambda *a: calls.append(1) or real(*a))
    quick = load_movielens_25m(root)
    assert calls and quick.name == "movielens-25m"
    pd.testing.assert_frame_equal(quick.ratings, careful.ratings)
    pd.testing.assert_frame_equal(quick.items, careful.items)
    assert load_dataset("movielens-20m", root).name == "movielens-20m"  # the same layout under its own name


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (["1,1,4.0,964982703", "", "", "2,2,3.25,964982704"], r"ratings\.csv line 5: rating '3\.25' is not a half-star"),
        (["1,1,4.0,964982703", "2,2,x,964982704"], r"ratings\.csv line 3: rating 'x' is not a number"),
        (["1,1,4.0,964982703", "2,2,3.0"], r"ratings\.csv line 3: expected 4 comma-separated fields .*found 3"),
        (["1,1,4.0,964982703", "2,2,3.0,1,9"], r"ratings\.csv line 3: expected 4 comma-separated fields .*found 5"),
        (["1,1,4.0,964982703,5", "2,2,3.0,1,9"], r"ratings\.csv line 2: expected 4 comma-separated fields .*found 5"),
        (["1,1,4.0,964982703", "", "1,1,3.0,964982704"], r"ratings\.csv line 4: duplicate entry for user 1, item 1"),
        (["1,1,4.0,964982703", "1,9,3.0,964982704"], r"ratings\.csv line 3: item 9 does not appear in movies\.csv"),
    ],
)
def test_the_fast_reader_reports_the_same_line_accurate_errors(tmp_path, fast, bad, pattern):
    root = _release(tmp_path / "r", ["userId,movieId,rating,timestamp", *bad])
    with pytest.raises(DataFormatError, match=pattern):
        load_movielens_latest_small(root)


def test_a_header_in_another_order_is_read_by_name(tmp_path, fast):
    root = _release(tmp_path / "r", ["timestamp,rating,movieId,userId", "964982703,4.0,1,1", "964982704,2.5,3,2"])
    ratings = load_movielens_latest_small(root).ratings
    assert ratings[["user", "item"]].to_numpy().tolist() == [[1, 1], [2, 3]]
    assert ratings["rating"].tolist() == [4.0, 2.5]


def test_sampled_synthetic_matches_the_exact_model_and_stays_small():
    exact = make_synthetic(num_users=1500, num_items=800, ratings_per_user=(20, 60), seed=2, method="exact")
    sampled = make_synthetic(num_users=1500, num_items=800, ratings_per_user=(20, 60), seed=2, method="sampled")
    for data in (exact, sampled):
        per_user = data.ratings.groupby("user").size()
        assert per_user.min() >= 20 and per_user.max() <= 60
        assert not data.ratings.duplicated(["user", "item"]).any()
    assert abs(exact.ratings["rating"].mean() - sampled.ratings["rating"].mean()) < 0.05
    assert abs(len(exact.ratings) - len(sampled.ratings)) < 0.05 * len(exact.ratings)
    # the same popularity skew: the share of ratings on the 10% most rated items
    top = [d.ratings["item"].value_counts().iloc[:80].sum() / len(d.ratings) for d in (exact, sampled)]
    assert abs(top[0] - top[1]) < 0.03, top
    with pytest.raises(ValueError, match="method must be"):
        make_synthetic(method="dense")


def test_a_million_users_by_fifty_thousand_items_fits_in_little_memory(tmp_path):
    """A dense [users, items] draw would need 400 GB here; the sampled one a few hundred MB."""
    # VmHWM is this process's own peak; ru_maxrss would carry a big parent's peak across fork + exec
    code = ("import re; from tfmetarec.data.synthetic import make_synthetic; "
            "d = make_synthetic(num_users=1_000_000, num_items=50_000, ratings_per_user=(1, 3), seed=0); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print(len(d.ratings), int(hwm) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    ratings, peak_mb = (int(v) for v in out.stdout.split()[-2:])
    assert 1_900_000 < ratings < 2_100_000
    assert peak_mb < 3000, peak_mb
