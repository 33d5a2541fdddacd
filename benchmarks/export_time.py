"""How long an export and a quickstart run take: this checkout against another, side by side.

    python benchmarks/export_time.py --against ../before [--rounds 3]

Each round runs, for each checkout in turn (``--against``'s first), fresh processes that import
that checkout's library (``PYTHONPATH``): one per model below, timing ``export_saved_model``
alone (what ``tfmetarec export`` spends tracing and saving every signature), and one
``tfmetarec quickstart --quiet`` (load, split, meta-train and pretrain with their first-call
traces and XLA compiles, checkpoint choice, evaluation, report), timed as a whole process.
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
export_saved_model(learner, tempfile.mkdtemp(), "timed", 1, encoder=encoder, buckets=BUCKETS)
print("SECONDS", time.perf_counter() - start)
"""


def _env(tree: Path) -> dict:
    """The environment of a child that imports ``tree``'s library (run with ``cwd=tree`` too: ``python -c``
    puts the working folder first on the path)."""
    return {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}


def export_seconds(tree: Path, model: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, model], env=_env(tree), cwd=tree, capture_output=True,
                         text=True, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("SECONDS")]
    if out.returncode or not lines:
        raise RuntimeError(f"export with {tree} failed:\n{out.stderr[-3000:]}")
    return float(lines[-1].split()[1])


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
    args = parser.parse_args(argv)
    trees = {"before": Path(args.against).resolve(), "this checkout": ROOT}
    tasks = ["export paper", "export default", "quickstart"]
    seconds = {(who, task): [] for who in trees for task in tasks}
    for r in range(args.rounds):
        for who, tree in trees.items():
            for model in ("paper", "default"):
                seconds[(who, f"export {model}")].append(export_seconds(tree, model))
            workdir = Path(args.workdir) / f"{r}-{who.replace(' ', '-')}"
            subprocess.run(["rm", "-rf", str(workdir)], check=True)
            seconds[(who, "quickstart")].append(quickstart_seconds(tree, workdir))
            print(r, who, {t: round(seconds[(who, t)][-1], 2) for t in tasks}, flush=True)
    rows = []
    for task in tasks:
        before = statistics.median(seconds[("before", task)])
        for who in trees:
            median = statistics.median(seconds[(who, task)])
            rows.append({"what": task, "library": who, "median s": round(median, 2),
                         "rounds": " / ".join(f"{s:.1f}" for s in seconds[(who, task)]),
                         "speed-up": round(before / median, 2)})
    table = markdown_table(rows, ["what", "library", "median s", "rounds", "speed-up"])
    print(table)
    return write_report(args.out, [f"# Export and quickstart time\n\nBefore: {trees['before']}\n", table])


if __name__ == "__main__":
    raise SystemExit(main())
