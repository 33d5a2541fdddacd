"""Latency of one ``adapt_and_score`` request: TF SavedModel against ONNX Runtime.

    python benchmarks/serving_latency.py [--rounds 5] [--calls 200] [--quick]

A MeLU-sized model (4 user + 4 item categorical fields embedded in 32 dims, decision
MLP 256-64-64-1) under MAML with 5 inner steps adapting the decision layers; one request
= one new user with a support of 20 ratings and a query of 100 items. Every runtime gets
the same request, one call at a time, after a warm-up; p50 and p99 are taken per round
of ``--calls`` calls and the table shows the median over rounds.

FLOP count (what GFLOP/s divides by). One decision-MLP forward on one row costs
``F = 2 * (256*256 + 256*64 + 64*64 + 64*1) = 172,160`` FLOP. Each inner step is a
forward and a backward pass over the support, about ``3 F S``; scoring the query is
``F Q``. With S = 20, Q = 100 and 5 steps: ``5 * 3 * F * 20 + F * 100 = 68.9`` MFLOP.
Embedding lookups and the gradient's shape arithmetic are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine, markdown_table, matmul_gflops  # noqa: E402

from tfmetarec.export import export_saved_model  # noqa: E402
from tfmetarec.export.onnx import OnnxScorer, export_onnx, quantize_onnx, sample_request  # noqa: E402
from tfmetarec.learners import MAML  # noqa: E402
from tfmetarec.models import MeLU  # noqa: E402

USER_VOCABS = (3, 8, 22, 40)
ITEM_VOCABS = (20, 30, 50, 100)
HIDDEN = (256, 64, 64)
SUPPORT, QUERY, STEPS = 20, 100, 5
FLOPS = 5 * 3 * 172_160 * SUPPORT + 172_160 * QUERY


def percentiles(fn, calls: int, rounds: int) -> tuple[float, float]:
    """Median over rounds of the per-round p50 and p99 latency, in ms."""
    p50s, p99s = [], []
    for _ in range(rounds):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        p50s.append(np.percentile(times, 50) * 1e3)
        p99s.append(np.percentile(times, 99) * 1e3)
    return float(np.median(p50s)), float(np.median(p99s))


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 20 calls")
    parser.add_argument("--out", default="benchmarks/results/serving_latency.md")
    args = parser.parse_args(argv)
    rounds, calls = (2, 20) if args.quick else (args.rounds, args.calls)

    model = MeLU(USER_VOCABS, ITEM_VOCABS, 0, embedding_dim=32, hidden_units=HIDDEN, seed=0)
    learner = MAML(model, inner_steps=STEPS, inner_lr=0.01, adapt="decision")
    request = sample_request(learner, tasks=1, support=SUPPORT, query=QUERY, seed=0)
    request["support_mask"][:] = 1.0
    work = Path(tempfile.mkdtemp(prefix="tfmetarec-latency-"))

    started = time.perf_counter()
    saved = export_saved_model(learner, work / "serving", "melu", 1)
    saved_s = time.perf_counter() - started
    started = time.perf_counter()
    onnx_path = export_onnx(learner, work / "adapt_and_score.onnx")
    onnx_s = time.perf_counter() - started
    int8_path = quantize_onnx(onnx_path, work / "adapt_and_score.int8.onnx")

    signature = tf.saved_model.load(str(saved)).signatures["adapt_and_score"]
    tf_inputs = {k: tf.constant(v) for k, v in request.items()}
    eager = learner.score(learner.adapt({k[8:]: v for k, v in tf_inputs.items() if k.startswith("support_")}),
                          {k[6:]: v for k, v in tf_inputs.items() if k.startswith("query_")}).numpy()

    scorer = OnnxScorer(onnx_path, threads=args.threads)
    int8 = OnnxScorer(int8_path, threads=args.threads)
    checked = scorer.check(request)
    runtimes = {
        "TF SavedModel (signature from Python)": lambda: signature(**tf_inputs)["scores"].numpy(),
        "ONNX Runtime float32 (session.run)": lambda: scorer.session.run(None, checked),
        "ONNX Runtime float32 + request checks (OnnxScorer)": lambda: scorer(request),
        "ONNX Runtime int8 weights (session.run)": lambda: int8.session.run(None, checked),
    }
    outputs = {
        "TF SavedModel (signature from Python)": signature(**tf_inputs)["scores"].numpy(),
        "ONNX Runtime float32 (session.run)": scorer(request)["scores"],
        "ONNX Runtime int8 weights (session.run)": int8(request)["scores"],
    }
    rows = []
    for name, fn in runtimes.items():
        for _ in range(max(10, calls // 10)):
            fn()
        p50, p99 = percentiles(fn, calls, rounds)
        out = outputs.get(name, outputs["ONNX Runtime float32 (session.run)"])
        rows.append({"runtime": name, "p50 ms": round(p50, 3), "p99 ms": round(p99, 3),
                     "GFLOP/s at p50": round(FLOPS / (p50 / 1e3) / 1e9, 1),
                     "max |score - eager|": f"{np.abs(out - eager).max():.1e}"})
        print(rows[-1], flush=True)
    roofline = matmul_gflops()
    text = "\n".join([
        f"Command: `python benchmarks/serving_latency.py{' --quick' if args.quick else ''}`",
        f"Machine: {machine()}; ONNX Runtime intra-op threads: {args.threads}",
        f"Request: 1 user, support {SUPPORT}, query {QUERY}, {STEPS} inner steps (MAML, decision layers); "
        f"{FLOPS / 1e6:.1f} MFLOP per request; roofline (2048² matmul) {roofline:.0f} GFLOP/s",
        f"Rounds: {rounds} x {calls} calls; medians over rounds of per-round p50 / p99",
        "",
        markdown_table(rows, ["runtime", "p50 ms", "p99 ms", "GFLOP/s at p50", "max |score - eager|"]),
        "",
        f"Export time: SavedModel {saved_s:.1f} s, ONNX {onnx_s:.1f} s (conversion, checker, ONNX Runtime proof).",
        f"Sizes: SavedModel {size_mb(saved):.2f} MB, ONNX float32 {size_mb(onnx_path):.2f} MB, "
        f"ONNX int8 {size_mb(int8_path):.2f} MB.",
    ])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
