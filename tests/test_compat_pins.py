"""pyproject.toml's pins, its declared TF/Keras matrix and the last scripts/check_compat.py run agree.

Reads files only (no network, no installs). A pin or matrix change without a new run of
``python scripts/check_compat.py`` fails here.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from scripts import check_compat

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MATRIX = check_compat.matrix(PYPROJECT)
PINS = {canonicalize_name(r.name): r.specifier for r in check_compat.requirements(PYPROJECT)}
RESULTS = json.loads((ROOT / "scripts" / "compat_results.json").read_text(encoding="utf-8"))["rows"]


def minor(version: str) -> Version:
    return Version(check_compat.minor(version))


def bound(name: str, operator: str) -> Version:
    found = [Version(s.version) for s in PINS[name] if s.operator == operator]
    assert len(found) == 1, f"{name} needs exactly one {operator!r} bound, has {PINS[name]}"
    return found[0]


def next_minor(version: Version) -> Version:
    return Version(f"{version.major}.{version.minor + 1}")


def test_the_matrix_names_distinct_tf_minors_each_with_a_keras():
    assert len(MATRIX) >= 3, "declare at least the floor, a middle and the newest TF"
    minors = [minor(p["tensorflow"]) for p in MATRIX]
    assert len(set(minors)) == len(minors), f"one Keras per TF minor: {minors}"
    assert all(Version(p["keras"]) >= Version("3") for p in MATRIX)


@pytest.mark.parametrize("pair", MATRIX, ids=lambda p: p["tensorflow"])
def test_every_pair_satisfies_the_tensorflow_and_keras_pins(pair):
    assert PINS["tensorflow"].contains(pair["tensorflow"]), f"TF {pair['tensorflow']} outside {PINS['tensorflow']}"
    assert PINS["keras"].contains(pair["keras"]), f"Keras {pair['keras']} outside {PINS['keras']}"


def test_the_tensorflow_range_spans_exactly_the_matrix():
    minors = sorted(minor(p["tensorflow"]) for p in MATRIX)
    assert bound("tensorflow", ">=") == minors[0], "the TF floor is the lowest TF minor of the matrix"
    assert bound("tensorflow", "<") == next_minor(minors[-1]), "the TF cap is the minor after the newest in the matrix"
    # The notebooks install only for matrix minors: a gap would refuse a TF the pins accept.
    assert minors == [Version(f"{minors[0].major}.{m}") for m in range(minors[0].minor, minors[-1].minor + 1)], (
        f"every TF minor inside the range is in the matrix: {minors}")
    assert bound("keras", ">=") == min(minor(p["keras"]) for p in MATRIX), "the Keras floor is the oldest matrix Keras"


@pytest.mark.parametrize("pair", MATRIX, ids=lambda p: p["tensorflow"])
def test_every_pair_passed_its_last_check_with_the_current_pins(pair):
    rows = [r for r in RESULTS if r["kind"] == "pair" and minor(r["tensorflow"]) == minor(pair["tensorflow"])]
    assert rows, f"no result for TF {pair['tensorflow']}: run python scripts/check_compat.py --only {minor(pair['tensorflow'])}"
    for row in rows:  # one per Python it was run with
        assert (row["tensorflow"], row["keras"]) == (pair["tensorflow"], pair["keras"]), (
            "the matrix changed since the last run: run python scripts/check_compat.py")
        assert row["pins"] == check_compat.watched_pins(PYPROJECT), (
            "pins changed since the last run: run python scripts/check_compat.py")
        assert check_compat.passed(row), f"TF {row['tensorflow']} failed its last check: {row['error']}"


@pytest.mark.parametrize("end", ["lowest", "newest"])
def test_the_floors_were_run_with_the_current_pins(end):
    pair = sorted(MATRIX, key=lambda p: Version(p["tensorflow"]))[0 if end == "lowest" else -1]
    rows = [r for r in RESULTS if r["kind"] == "floors" and minor(r["tensorflow"]) == minor(pair["tensorflow"])]
    assert rows, f"no floors result for the {end} TF: run python scripts/check_compat.py --floors"
    for row in rows:
        assert (row["tensorflow"], row["keras"]) == (pair["tensorflow"], pair["keras"])
        assert row["pins"] == check_compat.watched_pins(PYPROJECT), "pins changed: rerun with --floors"
        assert {n: Version(v) for n, v in row["resolved"].items()} == {
            n: Version(v) for n, v in check_compat.floors(PYPROJECT).items()}
        assert check_compat.passed(row), f"the floors failed their last check: {row['error']}"


@pytest.mark.parametrize("name", ["onnx", "tf2onnx", "onnxruntime", "keras-rs", "numpy", "pandas"])
def test_resolved_versions_are_inside_the_pins(name):
    for row in RESULTS:
        version = row["installed"].get(name) or row["resolved"].get(name)
        assert version and PINS[name].contains(version), f"TF {row['tensorflow']} ran {name} {version}, outside {PINS[name]}"


@pytest.mark.parametrize("name", ["onnx", "tf2onnx"])
def test_the_onnx_pins_allow_no_minor_beyond_what_ran(name):
    """A cap that admits an untried onnx/tf2onnx minor lets pip pick it, and the newest need what old TF can't take."""
    ran = max(Version(row["installed"].get(name) or row["resolved"][name]) for row in RESULTS)
    assert bound(name, "<") <= next_minor(ran), f"{name} {PINS[name]} admits releases after {ran}, the newest run"

