"""Install tfmetarec beside each TensorFlow/Keras pair of the declared matrix and run it there.

    python scripts/check_compat.py                  # every pair of [tool.tfmetarec.compat] in pyproject.toml
    python scripts/check_compat.py --only 2.17      # one TF minor (repeat or comma-separate for more)
    python scripts/check_compat.py --floors         # also rerun the lowest and newest pairs with dependencies at their floors
    python scripts/check_compat.py --table          # print the README table from the last results; run nothing

For each pair, in a fresh venv (nothing is shared with the checkout's .venv):

1. resolve: ``pip install --dry-run --report`` of ``.[onnx,dev]`` under a constraints file that pins the
   pair; the report must keep TensorFlow and Keras at the pair and protobuf, ml_dtypes and numpy inside
   that TensorFlow's own requirements.
2. keep: install the pair alone (as Colab has it), then dry-run ``.[onnx,dev]`` again with no constraints,
   as a Colab user's plain ``pip install`` does: the plan must replace neither TensorFlow nor Keras.
3. install ``.[onnx,dev]`` (constrained), then import TF, Keras, keras_rs.layers, onnx, tf2onnx,
   onnxruntime and tfmetarec and check the installed TF/Keras are still the pair.
4. quickstart with a few steps, then the TESTS subset with ``pytest -x -q``.

The results go to scripts/compat_results.json (rows of other pairs and Pythons are kept), which the README's
"Compatibility" table is made from (``--table``) and tests/test_compat_pins.py checks against the pins.
Runs on demand only: it needs the package index and takes a few minutes per pair.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
RESULTS = ROOT / "scripts" / "compat_results.json"

# The fast subset run in every venv: keras_rs layers (two-tower retrieval), ONNX export, a learner.
TESTS = [
    "tests/export/test_export_onnx.py",
    "tests/learners/test_maml.py",
    "tests/models/test_two_tower.py",
]
QUICKSTART = ["quickstart", "--meta-steps", "20", "--pretrain-steps", "20", "--quiet"]
EXTRAS = ".[onnx,dev]"
# Packages whose pins the results were made with (a change in these needs a new run).
WATCHED = ("tensorflow", "keras", "keras-rs", "numpy", "pandas", "matplotlib", "tensorboard",
           "onnx", "tf2onnx", "onnxruntime", "protobuf", "ml-dtypes")
# Reported per row: what the resolver picked.
REPORTED = ("tensorflow", "keras", "keras-rs", "onnx", "tf2onnx", "onnxruntime", "protobuf", "ml-dtypes",
            "numpy", "pandas")
# Must stay inside the installed TensorFlow's own requirements.
TF_BOUND = ("protobuf", "ml-dtypes", "numpy")
# --floors installs these at the lowest version our pins allow.
FLOORED = ("numpy", "pandas", "matplotlib", "keras-rs", "onnx", "tf2onnx", "onnxruntime")
IMPORT_CHECK = """
import json, importlib.metadata as md
import tensorflow, keras, keras_rs.layers, onnx, tf2onnx, onnxruntime, tfmetarec
print(json.dumps({n: md.version(n) for n in %r}))
""" % (REPORTED,)


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def matrix(data: dict | None = None) -> list[dict]:
    return (data or project())["tool"]["tfmetarec"]["compat"]["matrix"]


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def requirements(data: dict | None = None) -> list[Requirement]:
    data = data or project()
    extras = data["project"]["optional-dependencies"]
    return [Requirement(r) for r in data["project"]["dependencies"] + extras["onnx"] + extras["dev"]]


def watched_pins(data: dict | None = None) -> dict[str, str]:
    """The requirement strings of the packages that decide compatibility, as pyproject.toml has them now."""
    return {canonicalize_name(r.name): str(r) for r in requirements(data) if canonicalize_name(r.name) in WATCHED}


def floors(data: dict | None = None) -> dict[str, str]:
    out = {}
    for r in requirements(data):
        for spec in r.specifier:
            if canonicalize_name(r.name) in FLOORED and spec.operator == ">=":
                out[canonicalize_name(r.name)] = spec.version
    return out


class Step(Exception):
    """A step failed; the message says which and why."""


def run(cmd: list[str], log: Path, cwd: Path = ROOT, env: dict | None = None, timeout: int = 3600) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(map(str, cmd)) + "\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        out.write(proc.stdout)
        out.write(f"\n[exit {proc.returncode} after {time.time() - started:.0f} s]\n")
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stdout.splitlines() if "is ignored" not in line)[-2500:]
        raise Step(f"{log.stem} failed (exit {proc.returncode}, log {log}):\n{tail}")
    return proc.stdout


def planned(report_path: Path) -> tuple[dict[str, str], dict[str, list[str]], dict]:
    """(name -> version pip would install, name -> its requires_dist, the marker environment) from a report."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    versions, requires = {}, {}
    for item in report["install"]:
        name = canonicalize_name(item["metadata"]["name"])
        versions[name] = item["metadata"]["version"]
        requires[name] = item["metadata"].get("requires_dist") or []
    return versions, requires, report["environment"]


def outside_tf_bounds(tf_requires: list[str], versions: dict[str, str], environment: dict) -> list[str]:
    """The TF_BOUND packages whose version is not one the TensorFlow wheel itself accepts."""
    bad = []
    for text in tf_requires:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in TF_BOUND or name not in versions:
            continue
        if req.marker is not None and not req.marker.evaluate({**environment, "extra": ""}):
            continue
        if not req.specifier.contains(versions[name], prereleases=True):
            bad.append(f"{name} {versions[name]} outside tensorflow's {req.specifier}")
    return bad


def check_pair(pair: dict, base: Path, python: str, with_floors: bool) -> list[dict]:
    tf, keras = pair["tensorflow"], pair["keras"]
    here = base / f"tf-{tf}"
    if here.exists():
        shutil.rmtree(here)
    venv, logs = here / "venv", here / "logs"
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    constraints = here / "constraints.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pins = watched_pins()
    row = dict(tensorflow=tf, keras=keras, kind="pair", python=None, resolve_ok=False, keep_ok=False,
               install_ok=False, quickstart_ok=False, tests=None, tests_ok=False, resolved={}, installed={},
               seconds=None, date=datetime.date.today().isoformat(), pins=pins, error=None)
    started = time.time()
    rows = [row]
    try:
        here.mkdir(parents=True)
        constraints.write_text(f"tensorflow=={tf}\nkeras=={keras}\n", encoding="utf-8")
        run([python, "-m", "venv", str(venv)], logs / "venv.log", env=env)
        run(pip + ["install", "--upgrade", "pip"], logs / "pip-upgrade.log", env=env)
        row["python"] = run([str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                            logs / "python.log", env=env).strip()

        # 1. resolve, constrained to the pair, in the empty venv
        report = here / "resolve.json"
        run(pip + ["install", "--dry-run", "--ignore-installed", "--report", str(report), "-c", str(constraints),
                   EXTRAS], logs / "resolve.log", env=env)
        versions, requires, environment = planned(report)
        row["resolved"] = {n: versions.get(n) for n in REPORTED}
        if (versions.get("tensorflow"), versions.get("keras")) != (tf, keras):
            raise Step(f"resolve: planned tensorflow {versions.get('tensorflow')}, keras {versions.get('keras')}")
        bad = outside_tf_bounds(requires["tensorflow"], versions, environment)
        if bad:
            raise Step("resolve: " + "; ".join(bad))
        row["resolve_ok"] = True

        # 2. keep: the pair installed first, then a plain (unconstrained) install must leave it alone
        run(pip + ["install", f"tensorflow=={tf}", f"keras=={keras}"], logs / "install-pair.log", env=env)
        report = here / "keep.json"
        run(pip + ["install", "--dry-run", "--report", str(report), EXTRAS], logs / "keep.log", env=env)
        plan, plan_requires, environment = planned(report)
        replaced = {n: v for n, v in plan.items() if n in ("tensorflow", "keras")}
        if replaced:
            raise Step(f"keep: a plain install over TF {tf} / Keras {keras} would install {replaced}")
        installed = json.loads(run(pip + ["list", "--format", "json"], logs / "pip-list.log", env=env))
        after = {canonicalize_name(p["name"]): p["version"] for p in installed} | plan
        tf_requires = requires["tensorflow"]
        bad = outside_tf_bounds(tf_requires, after, environment)
        if bad:
            raise Step("keep: " + "; ".join(bad))
        row["keep_ok"] = True

        # 3. install and import
        run(pip + ["install", "-c", str(constraints), EXTRAS], logs / "install.log", env=env)
        row["installed"] = imports(venv, here, logs / "imports.log", env)
        if (row["installed"]["tensorflow"], row["installed"]["keras"]) != (tf, keras):
            raise Step(f"install: ended with tensorflow {row['installed']['tensorflow']}, keras {row['installed']['keras']}")
        row["install_ok"] = True

        # 4. quickstart and tests
        exercise(row, venv, here, logs, env)
    except (Step, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)
    row["seconds"] = round(time.time() - started)

    if with_floors and row["tests_ok"]:
        rows.append(check_floors(pair, venv, here, constraints, env, pins))
    return rows


def imports(venv: Path, here: Path, log: Path, env: dict) -> dict:
    out = run([str(venv / "bin" / "python"), "-c", IMPORT_CHECK], log, cwd=here, env=env)
    return json.loads(out.strip().splitlines()[-1])


def exercise(row: dict, venv: Path, here: Path, logs: Path, env: dict, tag: str = "") -> None:
    run([str(venv / "bin" / "tfmetarec"), *QUICKSTART, "--workdir", str(here / f"quickstart{tag}")],
        logs / f"quickstart{tag}.log", cwd=here, env=env)
    row["quickstart_ok"] = True
    try:
        out = run([str(venv / "bin" / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                  logs / f"tests{tag}.log", env=env)
    except Step as exc:
        row["tests"] = summary(str(exc)) or "failed"
        raise
    row["tests"] = summary(out)
    row["tests_ok"] = True


def summary(output: str) -> str | None:
    for line in reversed(output.splitlines()):
        if " passed" in line or " failed" in line or " error" in line:
            return line.strip("= ").split(" in ")[0]
    return None


def check_floors(pair: dict, venv: Path, here: Path, constraints: Path, env: dict, pins: dict) -> dict:
    """The pair again, with every FLOORED dependency at the lowest version the pins allow."""
    wanted = floors()
    row = dict(tensorflow=pair["tensorflow"], keras=pair["keras"], kind="floors", python=None, resolve_ok=False,
               keep_ok=None, install_ok=False, quickstart_ok=False, tests=None, tests_ok=False,
               resolved={n: v for n, v in wanted.items()}, installed={}, seconds=None,
               date=datetime.date.today().isoformat(), pins=pins, error=None)
    started = time.time()
    logs = here / "logs"
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    try:
        row["python"] = run([str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                            logs / "python.log", env=env).strip()
        run(pip + ["install", "-c", str(constraints), *(f"{n}=={v}" for n, v in wanted.items())],
            logs / "install-floors.log", env=env)
        row["resolve_ok"] = True
        row["installed"] = imports(venv, here, logs / "imports-floors.log", env)
        mismatch = {n: row["installed"].get(n) for n, v in wanted.items()
                    if n in row["installed"] and Version(row["installed"][n]) != Version(v)}
        if mismatch or (row["installed"]["tensorflow"], row["installed"]["keras"]) != (pair["tensorflow"], pair["keras"]):
            raise Step(f"floors: installed {row['installed']}, wanted {wanted}")
        row["install_ok"] = True
        exercise(row, venv, here, logs, env, tag="-floors")
    except (Step, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)
    row["seconds"] = round(time.time() - started)
    return row


def passed(row: dict) -> bool:
    return bool(row["resolve_ok"] and row["keep_ok"] is not False and row["install_ok"] and row["quickstart_ok"]
                and row["tests_ok"])


def status(row: dict) -> str:
    if passed(row):
        return "pass"
    for step in ("resolve_ok", "keep_ok", "install_ok", "quickstart_ok", "tests_ok"):
        if row[step] is False:
            return f"FAIL ({step.removesuffix('_ok')})"
    return "FAIL"


def label(row: dict) -> str:
    return row["tensorflow"] + (" (floors)" if row["kind"] == "floors" else "")


def version_of(row: dict, name: str) -> str:
    return row["installed"].get(name) or row["resolved"].get(name) or "?"


def table(rows: list[dict]) -> str:
    head = ["TF", "Keras", "onnx", "protobuf", "resolve ok", "quickstart", "tests", "seconds", "date"]
    lines = [head]
    for r in rows:
        resolve = "ok" if r["resolve_ok"] and r["keep_ok"] is not False else "FAIL"
        lines.append([label(r), r["keras"], version_of(r, "onnx"), version_of(r, "protobuf"), resolve,
                      "ok" if r["quickstart_ok"] else "FAIL", r["tests"] or "-", str(r["seconds"]), r["date"]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def readme_table(rows: list[dict]) -> str:
    out = ["| TensorFlow | Keras | onnx | Python | status | checked |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {label(r)} | {r['keras']} | {version_of(r, 'onnx')} | {minor(r['python'] or '?')} "
                   f"| {status(r)} | {r['date']} |")
    floored = next((r["resolved"] for r in rows if r["kind"] == "floors"), None)
    if floored:
        at = ", ".join(f"{n} {v}" for n, v in sorted(floored.items()))
        out.append(f"\n(floors): the same pair with {at}: the lowest versions the pins allow.")
    return "\n".join(out)


def load_results() -> list[dict]:
    if not RESULTS.exists():
        return []
    return json.loads(RESULTS.read_text(encoding="utf-8"))["rows"]


def save_results(new: list[dict]) -> list[dict]:
    def key(r):
        return minor(r["tensorflow"]), r["kind"], minor(r["python"] or "?")

    keys = {key(r) for r in new}
    rows = [r for r in load_results() if key(r) not in keys] + new
    rows.sort(key=lambda r: (Version(r["tensorflow"]), r["kind"] != "pair", r["python"] or "?"))
    doc = {"about": "Written by scripts/check_compat.py; the README's Compatibility table is made from it.",
           "rows": rows}
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="TF_MINOR",
                        help="check only these TF minors, e.g. 2.17 (repeat or comma-separate)")
    parser.add_argument("--floors", action="store_true",
                        help="also rerun the lowest and newest pairs with numpy, pandas, onnx, ... at their pinned floors")
    parser.add_argument("--workdir", type=Path, help="where the venvs go (default: a new temporary folder)")
    parser.add_argument("--keep-venvs", action="store_true", help="keep the venvs and logs after the run")
    parser.add_argument("--python", default=sys.executable, help="interpreter the venvs are made from (default: this one)")
    parser.add_argument("--table", action="store_true", help="print the README table from the last results and exit")
    args = parser.parse_args(argv)

    if args.table:
        print(readme_table(load_results()))
        return 0
    pairs = matrix()
    only = {m.strip() for item in args.only for m in item.split(",") if m.strip()}
    unknown = only - {minor(p["tensorflow"]) for p in pairs}
    if unknown:
        parser.error(f"not in the matrix: {sorted(unknown)}; the matrix has "
                     f"{[minor(p['tensorflow']) for p in pairs]}")
    if only:
        pairs = [p for p in pairs if minor(p["tensorflow"]) in only]
    by_tf = sorted(matrix(), key=lambda p: Version(p["tensorflow"]))
    ends = [by_tf[0], by_tf[-1]]

    base = args.workdir or Path(tempfile.mkdtemp(prefix="tfmetarec-compat-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"checking {[p['tensorflow'] + '/' + p['keras'] for p in pairs]} in {base} "
          f"(python {platform.python_version()} driver, venvs from {args.python})", flush=True)
    rows = []
    for pair in pairs:
        print(f"\n== TF {pair['tensorflow']} + Keras {pair['keras']}", flush=True)
        new = check_pair(pair, base, args.python, with_floors=args.floors and pair in ends)
        for r in new:
            print(f"   {label(r)}: {status(r)} in {r['seconds']} s; tests: {r['tests']}", flush=True)
            if r["error"]:
                print("   " + r["error"].replace("\n", "\n   "), flush=True)
        rows += new
        save_results(new)
        if not args.keep_venvs:
            shutil.rmtree(base / f"tf-{pair['tensorflow']}" / "venv", ignore_errors=True)
    if not args.keep_venvs and args.workdir is None and all(passed(r) for r in rows):
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"\nlogs: {base}")
    print("\n" + table(rows))
    print(f"\nresults: {RESULTS.relative_to(ROOT)}; README table: python scripts/check_compat.py --table")
    return 0 if all(passed(r) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
