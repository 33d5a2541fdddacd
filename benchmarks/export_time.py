"""How long an export and a quickstart run take: this checkout against another, side by side.

    python benchmarks/export_time.py --against ../before [--rounds 3] [--no-quickstart]

Each round runs, for each checkout in turn (``--against``'s first), fresh processes that import
that checkout's library (``PYTHONPATH``): one per model below, timing ``export_saved_model``
alone (what ``tfmetarec export`` spends tracing and saving every signature), the SavedModel's
size on disk and how long a v1 ``serve``-tag session (the way TF Serving loads a model) takes to
load it in the same process, then ``export_onnx`` at one bucket (one user, support 32: the six
signatures' graphs, each converted and checked against TensorFlow); and one ``tfmetarec
quickstart --quiet`` (load, split, meta-train and pretrain with their first-call traces and XLA
compiles, checkpoint choice, evaluation, report), timed as a whole process.
Medians over the rounds. Models (weights as initialised: tracing does not depend on them):

* ``paper``: MeLU at the paper's size (4 user and 4 item categorical fields of 32, decision MLP
  256-64-64-1) under MAML (5 inner steps on the decision layers), the serving benchmark's model
  and catalogue (4,000 items), buckets users 1/8/32, support 8/32/128, query 16/128/256;
* ``default``: the learner ``tfmetarec train`` builds with every default on the quickstart's
  synthetic data, same buckets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

CHILD = """
import os, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["PYTHONPATH"], "benchmarks"))
from serving_latency import BUCKETS, build, build_default
from tfmetarec.export import export_saved_model
learner, data, encoder = build_default() if sys.argv[1] == "default" else build()
start = time.perf_counter()
path = export_saved_model(learner, tempfile.mkdtemp(), "timed", 1, encoder=encoder, buckets=BUCKETS)
print("SECONDS", time.perf_counter() - start)
print("MB", sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6)
import tensorflow as tf
start = time.perf_counter()
with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
print("LOAD", time.perf_counter() - start)
from tfmetarec.export import Buckets
from tfmetarec.export.onnx import export_onnx
start = time.perf_counter()
export_onnx(learner, tempfile.mkdtemp(), encoder=encoder, buckets=Buckets(users=(1,), support=(32,), query=(128,)))
print("ONNX", time.perf_counter() - start)
"""


def _env(tree: Path) -> dict:
    """The environment of a child that imports ``tree``'s library (run with ``cwd=tree`` too: ``python -c``
    puts the working folder first on the path)."""
    return {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}


def export_seconds(tree: Path, model: str) -> dict[str, float]:
    """One export in a fresh process: its seconds, the SavedModel's size (MB) and the seconds a
    v1 ``serve``-tag session (TF Serving's loader) takes to load it."""
    out = subprocess.run([sys.executable, "-c", CHILD, model], env=_env(tree), cwd=tree, capture_output=True,
                         text=True, timeout=1800)
    found = {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines()
             if line.split()[:1] and line.split()[0] in ("SECONDS", "MB", "LOAD", "ONNX")}
    if out.returncode or len(found) < 4:
        raise RuntimeError(f"export with {tree} failed:\n{out.stderr[-3000:]}")
    return found


def quickstart_seconds(tree: Path, workdir: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import sys; from tfmetarec.cli import main; sys.exit(main())",
                          "quickstart", "--workdir", str(workdir), "--quiet"], env=_env(tree), cwd=tree,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"quickstart with {tree} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    from common import markdown_table, write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="another checkout of the library (its root folder)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/export_time.md")
    parser.add_argument("--workdir", default="/tmp/tfmetarec-export-time", help="the quickstart runs' folder")
    parser.add_argument("--no-quickstart", action="store_true", help="time the exports only")
    args = parser.parse_args(argv)
    trees = {"before": Path(args.against).resolve(), "this checkout": ROOT}
    tasks = [f"{what} {model}" for model in ("paper", "default")
             for what in ("export s", "export MB", "v1 load s", "ONNX export s")]
    tasks += [] if args.no_quickstart else ["quickstart"]
    seconds = {(who, task): [] for who in trees for task in tasks}
    for r in range(args.rounds):
        for who, tree in trees.items():
            for model in ("paper", "default"):
                found = export_seconds(tree, model)
                for what, key in (("export s", "SECONDS"), ("export MB", "MB"), ("v1 load s", "LOAD"),
                                  ("ONNX export s", "ONNX")):
                    seconds[(who, f"{what} {model}")].append(found[key])
            if not args.no_quickstart:
                workdir = Path(args.workdir) / f"{r}-{who.replace(' ', '-')}"
                subprocess.run(["rm", "-rf", str(workdir)], check=True)
                seconds[(who, "quickstart")].append(quickstart_seconds(tree, workdir))
            print(r, who, {t: round(seconds[(who, t)][-1], 2) for t in tasks}, flush=True)
    rows = []
    for task in tasks:
        before = statistics.median(seconds[("before", task)])
        for who in trees:
            median = statistics.median(seconds[(who, task)])
            rows.append({"what": task, "library": who, "median": round(median, 2),
                         "rounds": " / ".join(f"{s:.2f}" for s in seconds[(who, task)]),
                         "before / this": round(before / median, 2)})
    table = markdown_table(rows, ["what", "library", "median", "rounds", "before / this"])
    print(table)
    return write_report(args.out, [f"# Export and quickstart time\n\nBefore: {trees['before']}\n", table])


if __name__ == "__main__":
    raise SystemExit(main())
