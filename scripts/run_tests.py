"""Run the test suite as ``make test`` does: test files in fresh pytest processes, two at a time.

Why not one long-lived process per core (pytest-xdist)? Each XLA compile leaves memory maps and
code in the process until it exits, and clearing Keras or resetting TensorFlow's context does not
return them (measured: a worker of ``pytest -n 2 --dist loadfile`` reached 9.4 GB RSS and 49,000
of the kernel's 65,530 memory maps on this suite). A process per file bounds both by the
heaviest file, at the cost of one TensorFlow import per file. The slow files (``SLOW_FIRST``, the
ones that compile XLA programs or train) each get a process; the light ones share a process,
``--share`` files at a time, so they pay for one import between them (each import and pytest start
costs ~4 s, most of a light file's time).

    python scripts/run_tests.py                      # the whole suite, 2 processes at a time
    python scripts/run_tests.py tests/export -k onnx # some files, with pytest options
    python scripts/run_tests.py --jobs 1 -x          # one at a time; stop at the first failure
    python scripts/run_tests.py --share 1            # every file in a process of its own

Arguments that name existing paths select files; all others go to every pytest process. Prints
one line per process (its files, outcome, seconds, peak RSS), then the output of every file that failed.
Exit status: 0 when every file passed (or had no selected tests), else the worst pytest status.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The slowest files start first so the two lanes end together (seconds per file, two lanes on 2
# cores, a fresh clone at c839552, 2026-12-07). Each runs in a process of its own; the files not
# listed share processes (SHARE).
SLOW_FIRST = (
    "tests/export/test_export_learners.py",  # 134
    "tests/learners/test_distribute.py",  # 130
    "tests/export/test_serving.py",  # 98
    "tests/test_learning.py",  # 97
    "tests/test_notebooks.py",  # 77
    "tests/learners/test_learner_contract.py",  # 71
    "tests/export/test_export_recipe.py",  # 64
    "tests/test_experiment.py",  # 63
    "tests/models/test_model_roundtrip.py",  # 54
    "tests/learners/test_loop.py",  # 42
    "tests/presets/test_presets.py",  # 36
)
SHARE = 6  # light files (not in SLOW_FIRST) per process: 35 of them make 6 processes of ~30-90 s
NO_TESTS = 5  # pytest's exit status when nothing was selected


@dataclass
class Outcome:
    path: str
    status: int
    seconds: float
    peak_mb: float
    summary: str
    output: str


def test_files(paths: list[str]) -> list[str]:
    """The test files under ``paths`` (files or folders; the whole ``tests/`` by default), slowest first."""
    found: set[str] = set()
    for p in paths or ["tests"]:
        if "::" in p:  # one test (node ID): run as given
            found.add(p)
            continue
        path = Path(p).resolve()
        files = [path] if path.is_file() else sorted(path.rglob("test_*.py"))
        found.update(str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f)
                     for f in files if f.name.startswith("test_"))
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    return sorted(found, key=lambda f: (rank.get(f, len(rank)), f))


def work_units(files: list[str], share: int = SHARE) -> list[list[str]]:
    """The pytest processes to run, each a list of files: a slow file (``SLOW_FIRST``) or a node ID
    alone, the other files ``share`` to a process, after the slow ones."""
    slow = set(SLOW_FIRST)
    alone = [[f] for f in files if f in slow or "::" in f]
    light = [f for f in files if f not in slow and "::" not in f]
    return alone + [light[i:i + share] for i in range(0, len(light), max(1, share))]


def _summary(output: str) -> str:
    """pytest's last line (``3 passed, 1 skipped in 4.2s``) without the ``=`` rules."""
    lines = [line.strip("= ").strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_file(paths: list[str], pytest_args: list[str], timeout: float) -> Outcome:
    """``pytest PATHS`` in a process of its own (no xdist); its status, time, peak RSS and output."""
    path = " + ".join(paths)
    command = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-q", *pytest_args, *paths]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        try:
            _, wait_status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(wait_status)
        log.seek(0)
        output = log.read()
    seconds = time.perf_counter() - started
    status = child.returncode
    if status < 0:  # killed by a signal: the timeout, or a crash
        reason = f"timed out after {timeout:.0f} s" if seconds >= timeout else f"died of signal {-status}"
        output += f"\n[run_tests] {path} {reason}\n"
        status = 3
    return Outcome(path, status, seconds, usage.ru_maxrss / 1024, _summary(output), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="test files run at the same time (default 2)")
    parser.add_argument("--share", type=int, default=SHARE,
                        help=f"light files per process (default {SHARE}; 1 = a process per file)")
    parser.add_argument("--file-timeout", type=float, default=1800, help="seconds before one process is killed")
    args, rest = parser.parse_known_args(argv)
    if args.jobs < 1 or args.share < 1:
        parser.error("--jobs and --share must be at least 1")
    paths = [a for a in rest if not a.startswith("-") and Path(a.split("::")[0]).exists()]
    pytest_args = [a for a in rest if a not in paths]
    stop_early = any(a in ("-x", "--exitfirst") for a in pytest_args)
    files = test_files(paths)
    if not files:
        print(f"no test files under {' '.join(paths) or 'tests'}", file=sys.stderr)
        return 4

    units = work_units(files, args.share)
    started = time.perf_counter()
    pending, outcomes, lock = list(units), [], threading.Lock()
    failed = threading.Event()

    def lane() -> None:
        while not (stop_early and failed.is_set()):
            with lock:
                if not pending:
                    return
                unit = pending.pop(0)
            outcome = run_file(unit, pytest_args, args.file_timeout)
            with lock:
                outcomes.append(outcome)
                mark = "ok " if outcome.status in (0, NO_TESTS) else "FAIL"
                print(f"[{len(outcomes):>2}/{len(units)}] {mark} {outcome.path:<48} {outcome.seconds:7.1f} s "
                      f"{outcome.peak_mb:7.0f} MB  {outcome.summary}", flush=True)
                for line in outcome.output.splitlines():
                    if line.startswith("SKIPPED"):
                        print(f"        {line}", flush=True)
            if outcome.status not in (0, NO_TESTS):
                failed.set()

    lanes = [threading.Thread(target=lane) for _ in range(min(args.jobs, len(units)))]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()

    bad = [o for o in outcomes if o.status not in (0, NO_TESTS)]
    for o in bad:
        print(f"\n{'=' * 30} {o.path} (exit {o.status}) {'=' * 30}\n{o.output}", flush=True)
    counts: dict[str, int] = {}
    for o in outcomes:
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)",
                                       o.summary):
            counts[word] = counts.get(word, 0) + int(number)
    total = ", ".join(f"{n} {w}" for w, n in counts.items()) or "no tests ran"
    heaviest = max(outcomes, key=lambda o: o.peak_mb)
    ran = sum(o.path.count(" + ") + 1 for o in outcomes)
    print(f"\n{total} in {time.perf_counter() - started:.0f} s over {ran} files in {len(outcomes)} processes "
          f"({len(lanes)} at a time); largest process {heaviest.peak_mb:.0f} MB ({heaviest.path})")
    if len(outcomes) < len(units):
        print(f"stopped early: {len(units) - len(outcomes)} processes not run")
    if bad:
        print("failed: " + " ".join(o.path for o in bad))
        return max(o.status for o in bad)
    if all(o.status == NO_TESTS for o in outcomes):
        return NO_TESTS
    return 1 if len(outcomes) < len(units) else 0


if __name__ == "__main__":
    sys.exit(main())
