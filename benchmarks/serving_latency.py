"""Serving: latency of one request, a load test, top-k over a large catalogue, and memory over
10,000 requests of random shapes. SavedModel (plain and XLA) against ONNX Runtime.

    python benchmarks/serving_latency.py [--rounds 5] [--calls 200] [--load-seconds 60] [--quick]

The model is MeLU at the paper's size: 8 fields (gender, age, occupation, zip; rate,
studio, country, release year) embedded in 32 dims, decision MLP 256-64-64-1, under MAML
with 5 second-order inner steps adapting the decision layers; its item table holds the
4,000 items of a synthetic catalogue. One request = one new user in raw IDs, a support of
20 ratings and a query of 100 candidates (padded in the graph to the support-32 /
query-128 bucket). Each runtime gets the same request, one call at a time, after a
warm-up; p50 and p99 are taken per round of ``--calls`` calls and the table shows the
median over rounds.

* load test: 8 client threads in one process send random requests (1 user, support
  1..32, query 1..128) for ``--load-seconds`` to one runtime; requests/s, p50, p99,
  errors and the growth of the process's RSS.
* recommend (``--only recommend``): MeLU trained for 300 meta-steps, ``recommend`` for one user
  (support 20, top 100) over 4,000 / 100,000 / 1,000,000 items, each size in a fresh process:
  two-stage exports (above 20,000 items; ``--candidates`` counts, default the library's
  ``auto``: 1,500, or 0.4 % of a catalogue above 375,000 items; from the local linear estimate,
  :mod:`tfmetarec.export.candidates`) against one that scores every item, both through the v1
  session and its one-user static signature (``recommend.t1.s32``: what the REST and gRPC
  builders send), timed in interleaved rounds; Recall@100 of the two-stage answer against the
  exhaustive one over 50 users; RSS each loaded export adds, size on disk. Then the two-tower
  model's keras-rs dot-product search over 100,000 items.
* memory: a fresh process per runtime serves 10,000 requests of random shapes (users
  1..8, support 0..128, query 1..256) and reports RSS and its memory-map count.
* online updates: ``update_state`` with one new rating on a cached state against ``adapt``
  from scratch on a history of 20 and of 100 ratings (both return the state a service
  caches), one user, SavedModel and ONNX Runtime.

FLOP count: one decision-MLP forward on one row costs ``F = 2 * (256*64 + 64*64 + 64)
= 41,216`` FLOP; an inner step on the support is about ``3 F S``, the query forward
``F Q``: with S = 20, Q = 100 and 5 steps, ``5 * 3 * F * 20 + F * 100 = 16.5`` MFLOP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine, markdown_table, write_report  # noqa: E402

from tfmetarec.data import Field, FeatureEncoder, InteractionData, make_synthetic  # noqa: E402
from tfmetarec.export import Buckets, export_saved_model, load_contract, make_request  # noqa: E402
from tfmetarec.export.contract import CANDIDATES  # noqa: E402
from tfmetarec.learners import MAML  # noqa: E402
from tfmetarec.models import MeLU, TwoTower  # noqa: E402

SUPPORT, QUERY, STEPS = 20, 100, 5
FLOPS = 5 * 3 * 41_216 * SUPPORT + 41_216 * QUERY
FIELDS = ("gender", "age", "occupation", "zip")
BUCKETS = Buckets(users=(1, 8, 32), support=(8, 32, 128), query=(16, 128, 256))


def catalogue(num_items: int, seed: int = 0) -> tuple[InteractionData, FeatureEncoder]:
    """Synthetic users and ratings, items with 3 categorical fields and a release year."""
    base = make_synthetic(num_users=600, num_items=min(num_items, 4000), seed=seed)
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item": np.arange(1, num_items + 1), "title": "",
                          "year": pd.array(rng.integers(1950, 2000, num_items), dtype="Int64")})
    for name, vocab in (("rate", 20), ("studio", 30), ("country", 50)):
        items[name] = [f"{name}{v}" for v in rng.integers(0, vocab, num_items)]
    users = tuple(Field(c, "user", transform={"age": "age_bucket", "zip": "zip_prefix"}.get(c)) for c in FIELDS)
    fields = users + (Field("year", "item", transform="year_bucket"),) + tuple(
        Field(n, "item") for n in ("rate", "studio", "country"))
    data = InteractionData("synthetic", base.ratings, base.users, items, fields=fields)
    return data, FeatureEncoder().fit(data)


def build_default():
    """The learner ``tfmetarec train`` builds with every default, on the quickstart's synthetic data
    (weights as initialised: serving time does not depend on them)."""
    from tfmetarec.config import ExperimentConfig
    from tfmetarec.workflows.build import build_learner, build_model
    from tfmetarec.workflows.prepare import prepare

    config = ExperimentConfig()
    prepared = prepare(config)
    return build_learner(config, build_model(config, prepared.encoded), prepared), prepared.data, prepared.encoder


def build(num_items: int = 4000, model: str = "melu"):
    data, encoder = catalogue(num_items)
    encoded = encoder.transform(data)
    cls = MeLU if model == "melu" else TwoTower
    net = cls.from_spec(encoded.spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids,
                        embedding_dim=32, hidden_units=(64, 64), seed=0)
    return MAML(net, inner_steps=STEPS, inner_lr=0.01, adapt="decision"), data, encoder


def request(data, rng, users=1, support=SUPPORT, query=QUERY) -> dict:
    profiles = data.users.sample(users, random_state=int(rng.integers(1 << 30)))
    people = [{"user_id": 0, **{f: getattr(p, f) for f in FIELDS}} for p in profiles.itertuples()]
    items = data.items["item"].to_numpy()
    rated = [list(zip(rng.choice(items, support).tolist(), rng.integers(1, 6, support).astype(float).tolist()))
             for _ in range(users)]
    return make_request(people, rated, [rng.choice(items, query).tolist() for _ in range(users)], FIELDS)


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


def interleaved_percentiles(fns: dict, calls: int, rounds: int) -> dict:
    """``{name: (p50, p99)}``: the median over rounds of each function's per-round p50 and p99 (ms),
    the functions taking turns round by round (a ratio between them is then measured side by side)."""
    got: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            got[name].append(percentiles(fn, calls, 1))
    return {name: tuple(float(x) for x in np.median(np.array(v), axis=0)) for name, v in got.items()}


def interleaved_p50(fns: dict, calls: int, rounds: int) -> dict:
    """Median over rounds of each function's per-round p50 (ms), the functions taking turns."""
    return {name: p[0] for name, p in interleaved_percentiles(fns, calls, rounds).items()}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def signature_caller(path: Path, name: str):
    fn = tf.saved_model.load(str(path)).signatures[name]
    specs = fn.structured_input_signature[1]

    def call(req: dict):
        return fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in req.items()})
    return call


def static_caller(path: Path, name: str, req: dict):
    """``req`` (one user) through the export's static signature for its support bucket, through the
    v1 session: ``(signature name, call)``. The ratings are padded once, by
    :func:`~tfmetarec.export.contract.bucketed_request` (what the REST and gRPC builders send), as
    the ONNX graph's feeds it is compared with are padded beforehand."""
    from tfmetarec.export import bucketed_request

    static, arrays = bucketed_request(load_contract(path), name, req)
    run = session_caller(path, static)
    return static, lambda: run(arrays)


def session_caller(path: Path, name: str):
    """The signature through a TF1 session on the ``serve`` tag, the way TF Serving loads a
    SavedModel (its default thread pools: TensorFlow's own, sized to the machine), fed numpy."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
    signature = meta.signature_def[name]
    inputs = {k: v.name for k, v in signature.inputs.items()}
    outputs = {k: v.name for k, v in signature.outputs.items()}

    def call(req: dict):
        return session.run(outputs, {inputs[k]: v for k, v in req.items()})
    return call


DEFAULT_SESSION = "TF SavedModel, default (v1 `serve` session)"


def batch_section(learner, data, encoder, root: Path, plain: Path, xla: Path, args) -> list[dict]:
    """Throughput of requests holding 1, 8 and 32 users (support 20, query 100 each; the users-8
    and users-32 buckets), one request at a time, every (runtime, users) pair taking its turn in
    each of ``2 * rounds`` rounds: users per second through the v1 session and
    the raw-ID ONNX client (its graphs exported at the users-1, users-8 and users-32 buckets, so each
    request runs in the smallest graph that holds it)."""
    from tfmetarec.export.onnx import OnnxRecommender, export_onnx

    onnx_dir = export_onnx(learner, root / "onnx-batch", encoder=encoder,
                           buckets=Buckets(users=(1, 8, 32), support=(32,), query=(128,)),
                           signatures=("adapt_and_score",))
    client = OnnxRecommender(onnx_dir, threads=2)
    callers = {"ONNX Runtime (OnnxRecommender, raw IDs, 2 threads)": lambda r: client("adapt_and_score", r),
               DEFAULT_SESSION: session_caller(plain, "adapt_and_score"),
               "TF SavedModel, XLA (v1 `serve` session)": session_caller(xla, "adapt_and_score")}
    rng = np.random.default_rng(1)
    fns = {}
    for users in (1, 8, 32):
        req = request(data, rng, users=users)
        calls = dict(callers)
        if users == 1:  # what the REST and gRPC builders send a one-user request to
            calls["TF SavedModel, default (v1 session, static one-user signature)"] = \
                lambda r, c=static_caller(plain, "adapt_and_score", req)[1]: c()
        for name, call in calls.items():
            fns[(name, users)] = lambda c=call, r=req: c(r)
    # every (runtime, users) pair takes its turn in each round, so the gains are measured side by side
    rows = [{"runtime": name, "users per request": users, "p50_ms": p50, "p99_ms": p99,
             "users_per_s": users / p50 * 1e3}
            for (name, users), (p50, p99) in interleaved_percentiles(fns, max(args.calls // 4, 10),
                                                                     2 * args.rounds).items()]
    one = {r["runtime"]: r["users_per_s"] for r in rows if r["users per request"] == 1}
    static = one["TF SavedModel, default (v1 session, static one-user signature)"]
    for r in rows:  # batching's gain: users/s against one user a request through the same runtime
        r["vs_one_user"] = r["users_per_s"] / one[r["runtime"]]
        # and for the default SavedModel, against the static signature a one-user request is sent to
        r["vs_static_one_user"] = r["users_per_s"] / static if r["runtime"] == DEFAULT_SESSION else "—"
    return rows


RECOMMEND_TITLE = ("## recommend for one new user (support 20, top 100): two-stage against scoring every item, "
                   "v1 `serve` session, one-user static signature")


def train_briefly(learner, data, encoder, steps: int = 300) -> None:
    """Meta-train ``learner`` for ``steps`` XLA steps on the catalogue's ratings (so the scores that
    the recommend section ranks come from a trained model, not random weights)."""
    from tfmetarec.data import SplitConfig, cold_start_split
    from tfmetarec.learners import MetaTrainer
    from tfmetarec.tasks import EpisodeSampler

    encoded = encoder.transform(data)
    split = cold_start_split(data, SplitConfig(seed=0))
    MetaTrainer(learner, jit_compile=True).fit(EpisodeSampler(encoded, split.meta_train, batch_size=32, seed=0),
                                               steps=steps, verbose=0)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def recommend_one(num_items: int, args) -> list[dict]:
    """One catalogue size in this process: MeLU trained briefly, exported two-stage once per
    ``--candidates`` count and once exhaustive, all loaded through the v1 session; p50/p99
    interleaved round by round, Recall@100 of each two-stage answer against the exhaustive one
    over 50 users, the RSS each loaded export adds and its size on disk. One row per count."""
    learner, data, encoder = build(num_items)
    train_briefly(learner, data, encoder)
    root = Path(tempfile.mkdtemp())
    paths, export_s = {}, {}
    for count in [*args.candidates, None]:
        started = time.perf_counter()
        paths[count] = export_saved_model(learner, root, f"c{count}", 1, encoder=encoder, buckets=BUCKETS, top_k=100,
                                          candidates=count)
        export_s[count] = time.perf_counter() - started
    rng = np.random.default_rng(3)
    reqs = [{k: v for k, v in request(data, rng).items() if k != "query_item_id"} for _ in range(50)]
    # what the REST and gRPC builders send: the one-user static signature, its ratings padded to the bucket
    from tfmetarec.export import bucketed_request

    contract = load_contract(paths[None])
    static = bucketed_request(contract, "recommend", reqs[0])[0]
    sent = {id(r): bucketed_request(contract, "recommend", r)[1] for r in reqs}  # padded once, outside the timing
    callers, added = {}, {}
    for count, path in paths.items():
        before = rss_mb()
        run = session_caller(path, static)
        callers[count] = lambda r, run=run: run(sent[id(r)])
        callers[count](reqs[0])
        added[count] = rss_mb() - before
    if args.onnx_recommend and num_items <= 100_000:  # the same two stages in ONNX Runtime (the first count)
        from tfmetarec.export.onnx import OnnxRecommender, export_onnx

        started = time.perf_counter()
        folder = export_onnx(learner, root / "onnx", encoder=encoder, signatures=("recommend",), top_k=100,
                             buckets=Buckets(users=(1,), support=(32,), query=(16,)), candidates=args.candidates[0])
        export_s["onnx"] = time.perf_counter() - started
        client = OnnxRecommender(folder, threads=2)
        paths["onnx"] = folder
        before = rss_mb()
        callers["onnx"] = lambda r, c=client: c("recommend", r)
        callers["onnx"](reqs[0])
        added["onnx"] = rss_mb() - before
    answers = {count: [call(r)["item_id"][0] for r in reqs] for count, call in callers.items()}
    calls = max(3, args.calls // (10 if num_items <= 100_000 else 100))
    times = {count: ([], []) for count in callers}
    for _ in range(args.rounds):  # interleaved: each round times every export
        for count, call in callers.items():
            p50, p99 = percentiles(lambda c=call: c(reqs[1]), calls, 1)
            times[count][0].append(p50)
            times[count][1].append(p99)
    p50 = {count: float(np.median(t[0])) for count, t in times.items()}
    p99 = {count: float(np.median(t[1])) for count, t in times.items()}
    rows = []
    for count in [*args.candidates, *(["onnx"] if "onnx" in callers else [])]:
        search = load_contract(paths[count]).extra["recommend_search"]
        recall = [len(set(a) & set(b)) / len(b) for a, b in zip(answers[count], answers[None])]
        kind = search["kind"] + (" (ONNX Runtime, raw-ID client, 2 threads)" if count == "onnx" else "")
        rows.append({"catalogue": num_items, "search": kind, "anchors": search.get("anchors"),
                     "candidates": search.get("candidates"), "two_stage_p50_ms": p50[count],
                     "two_stage_p99_ms": p99[count], "exhaustive_p50_ms": p50[None], "exhaustive_p99_ms": p99[None],
                     "ratio": p50[count] / p50[None], "recall_at_100_mean": float(np.mean(recall)),
                     "recall_at_100_min": float(np.min(recall)), "export_s_two_stage": export_s[count],
                     "export_s_exhaustive": export_s[None], "disk_mb_two_stage": folder_mb(paths[count]),
                     "disk_mb_exhaustive": folder_mb(paths[None]), "rss_added_mb_two_stage": added[count],
                     "rss_added_mb_exhaustive": added[None]})
    return rows


def recommend_section(args, sizes=(4_000, 100_000, 1_000_000)) -> list[dict]:
    """:func:`recommend_one` for each catalogue size, each in a fresh process (clean RSS)."""
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--catalogue", str(n), "--rounds", str(args.rounds),
                              "--calls", str(args.calls), "--candidates", ",".join(map(str, args.candidates)),
                              *(["--onnx-recommend"] if args.onnx_recommend else [])],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"recommend over {n} items failed:\n{out.stderr[-3000:]}")
        rows += json.loads([x for x in out.stdout.splitlines() if x.startswith("ROWS ")][-1][5:])
        print(rows[-1], flush=True)
    return rows


RECOMMEND_COLUMNS = ["catalogue", "search", "anchors", "candidates", "two_stage_p50_ms", "two_stage_p99_ms", "exhaustive_p50_ms",
                     "exhaustive_p99_ms", "ratio", "recall_at_100_mean", "recall_at_100_min", "export_s_two_stage",
                     "disk_mb_two_stage", "disk_mb_exhaustive", "rss_added_mb_two_stage", "rss_added_mb_exhaustive"]


def load_test(call, data, seconds: float, clients: int = 8) -> dict:
    """``clients`` threads sending random single-user requests (drawn from 500 made beforehand)
    for ``seconds``."""
    done, errors, lock = [], [0], threading.Lock()
    rng = np.random.default_rng(11)
    pool = [request(data, rng, 1, int(rng.integers(1, 33)), int(rng.integers(1, 129))) for _ in range(500)]
    for req in pool[:10]:
        call(req)
    stop = time.perf_counter() + seconds
    before = rss_mb()

    def client(seed: int) -> None:
        i = seed
        while time.perf_counter() < stop:
            req = pool[i % len(pool)]
            i += clients
            start = time.perf_counter()
            try:
                call(req)
            except Exception:  # noqa: BLE001 (counted, reported)
                with lock:
                    errors[0] += 1
                continue
            with lock:
                done.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"requests_per_s": len(done) / elapsed, "p50_ms": np.percentile(done, 50) * 1e3,
            "p99_ms": np.percentile(done, 99) * 1e3, "errors": errors[0], "rss_growth_mb": rss_mb() - before}


MEMORY = r'''
import sys, time, numpy as np, tensorflow as tf
sys.path.insert(0, {bench!r})
import serving_latency as b
runtime, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
data, _ = b.catalogue(4000)
if runtime == "onnx":
    from tfmetarec.export.onnx import OnnxRecommender
    client = OnnxRecommender(path, threads=1)
    call = lambda r: client("adapt_and_score", r)
else:
    call = b.signature_caller(path, "adapt_and_score")
def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)
rng = np.random.default_rng(1)
for t in (1, 8):
    for s in (8, 32, 128):
        for q in (16, 128, 256):
            call(b.request(data, rng, t if runtime != "onnx" else 1, s, q))
start = (b.rss_mb(), maps())
marks = []
t0 = time.time()
for i in range(count):
    call(b.request(data, rng, int(rng.integers(1, 9)), int(rng.integers(0, 129)), int(rng.integers(1, 257))))
    if (i + 1) % (count // 5) == 0:
        marks.append((i + 1, round(b.rss_mb()), maps()))
print("MEM", start[0], start[1], marks, time.time() - t0)
'''


def memory_run(runtime: str, path: Path, count: int) -> dict:
    code = MEMORY.format(bench=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code, runtime, str(path), str(count)], capture_output=True, text=True,
                         check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("MEM")][-1]
    head, rest = line.split(" [", 1)
    _, rss0, maps0 = head.split()
    marks = eval("[" + rest.rsplit("]", 1)[0] + "]")  # noqa: S307 (our own printout)
    seconds = float(rest.rsplit("]", 1)[1])
    return {"runtime": runtime, "requests": count, "rss_after_warm_up_mb": float(rss0),
            "maps_after_warm_up": int(maps0), "rss_end_mb": marks[-1][1], "maps_end": marks[-1][2],
            "maps_at_each_fifth": "/".join(str(m[2]) for m in marks), "seconds": seconds}


UPDATE_TITLE = "## Online updates: one new rating on a cached state against adapting from scratch (1 user)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="smoke run: few calls, short load test")
    parser.add_argument("--out", default="benchmarks/results/serving_latency.md")
    parser.add_argument("--only", choices=("update", "latency", "recommend"),
                        help="run one section (update: written to serving_update.md; latency: the one-request table; "
                             "recommend: two-stage against exhaustive at 4,000 / 100,000 / 1,000,000 items)")
    parser.add_argument("--model", choices=("paper", "default"), default="paper",
                        help="latency section: MeLU at the paper's size (default) or the learner `tfmetarec train` "
                             "builds with every default, on the quickstart's synthetic data")
    parser.add_argument("--catalogue", type=int, help=argparse.SUPPRESS)  # one recommend size (a child process)
    parser.add_argument("--onnx-recommend", action="store_true",
                        help="recommend section: also the ONNX graphs' two stages, up to 100,000 items")
    parser.add_argument("--sizes", default="4000,100000,1000000", help="catalogue sizes of the recommend section")
    parser.add_argument("--candidates", default=[CANDIDATES],
                        type=lambda t: [c if c == "auto" else int(c) for c in t.split(",")],
                        help=f"two-stage candidate counts of the recommend section, comma-separated (default: {CANDIDATES})")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.load_seconds, args.memory_requests = 2, 20, 3.0, 100
    if args.catalogue:
        print("ROWS " + json.dumps(recommend_one(args.catalogue, args)), flush=True)
        return 0
    if args.only == "recommend":
        rows = recommend_section(args, tuple(int(n) for n in args.sizes.split(",")))
        return write_report(Path(args.out).with_name("serving_recommend.md"),
                            [RECOMMEND_TITLE, "", markdown_table(rows, RECOMMEND_COLUMNS), ""])
    from tfmetarec.export.onnx import OnnxRecommender, export_onnx

    learner, data, encoder = build() if args.model == "paper" else build_default()
    if args.only == "update":
        rows = update_section(learner, data, encoder, Path(tempfile.mkdtemp()), None, None, args)
        text = "\n".join([f"Machine: {machine()}", "", UPDATE_TITLE, "",
                          markdown_table(rows, ["runtime", "call", "p50_ms", "p99_ms", "vs adapt on 20"]), ""])
        print(text)
        out = Path(args.out).with_name("serving_update.md")
        out.write_text(text, encoding="utf-8")
        return 0
    rng = np.random.default_rng(0)
    req = request(data, rng)
    root = Path(tempfile.mkdtemp())
    timings = {}
    started = time.perf_counter()
    plain = export_saved_model(learner, root, "plain", 1, encoder=encoder, buckets=BUCKETS)
    timings["SavedModel export s"] = time.perf_counter() - started
    started = time.perf_counter()
    xla = export_saved_model(learner, root, "xla", 1, encoder=encoder, buckets=BUCKETS, jit_compile=True)
    timings["SavedModel (XLA) export s"] = time.perf_counter() - started
    started = time.perf_counter()
    onnx_dir = export_onnx(learner, root / "onnx", encoder=encoder, buckets=Buckets(users=(1,), support=(32,),
                                                                                      query=(128,)),
                           signatures=("adapt_and_score",))
    timings["ONNX export s (1 bucket)"] = time.perf_counter() - started
    eager = learner.score(*_eager_inputs(learner, encoder, req)).numpy()

    import onnxruntime as ort

    rows = []
    graph = onnx_dir / "adapt_and_score.t1.s32.onnx"
    client = OnnxRecommender(onnx_dir)
    feeds = _onnx_feeds(client, req)
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        got = session.run(None, feeds)[0][:, :QUERY]
        rows.append({"runtime": f"ONNX Runtime session.run, bucket t1/s32, {threads} thread(s)",
                     **_row(lambda s=session: s.run(None, feeds), got, eager, args)})
    for threads in (1, 2):
        client = OnnxRecommender(onnx_dir, threads=threads)
        got = client("adapt_and_score", req)["scores"]
        rows.append({"runtime": f"OnnxRecommender (raw IDs: checks, lookups, padding), {threads} thread(s)",
                     **_row(lambda c=client: c("adapt_and_score", req), got, eager, args)})
    overhead_rows = []
    for threads in (1, 2):  # the client against its own graph session, taking turns round by round
        client = OnnxRecommender(onnx_dir, threads=threads)
        session = client.session(graph.name)
        p50 = interleaved_p50({"graph": lambda s=session: s.run(None, feeds),
                               "client": lambda c=client: c("adapt_and_score", req)}, args.calls, 2 * args.rounds)
        overhead_rows.append({"threads": threads, "graph_p50_ms": p50["graph"], "client_p50_ms": p50["client"],
                              "overhead_ms": p50["client"] - p50["graph"],
                              "overhead_vs_graph": (p50["client"] - p50["graph"]) / p50["graph"]})
    for name, path in (("TF SavedModel, XLA opt-in (TF2 signature from Python)", xla),
                       ("TF SavedModel, default (no XLA; TF2 signature from Python)", plain)):
        call = signature_caller(path, "adapt_and_score")
        got = call(req)["scores"].numpy()
        rows.append({"runtime": name, **_row(lambda c=call: c(req), got, eager, args)})
    for name, path in (("TF SavedModel, XLA opt-in (v1 `serve` session, TF Serving's path)", xla),
                       ("TF SavedModel, default (no XLA; v1 `serve` session, TF Serving's path)", plain)):
        call = session_caller(path, "adapt_and_score")
        got = call(req)["scores"]
        rows.append({"runtime": name, **_row(lambda c=call: c(req), got, eager, args)})
        static, call = static_caller(path, "adapt_and_score", req)
        rows.append({"runtime": name.replace("session,", f"session, static `{static}`,"),
                     **_row(call, call()["scores"], eager, args)})
    print(markdown_table(rows, ["runtime", "p50_ms", "p99_ms", "gflops", "max_abs_diff"]), flush=True)
    one_thread = ort.SessionOptions()
    one_thread.intra_op_num_threads, one_thread.inter_op_num_threads = 1, 1
    onnx_graph = ort.InferenceSession(str(graph), one_thread, providers=["CPUExecutionProvider"])
    turns = interleaved_p50({"onnx": lambda: onnx_graph.run(None, feeds),
                             "default": lambda c=session_caller(plain, "adapt_and_score"): c(req),
                             "default_static": static_caller(plain, "adapt_and_score", req)[1],
                             "xla": lambda c=session_caller(xla, "adapt_and_score"): c(req),
                             "xla_static": static_caller(xla, "adapt_and_score", req)[1]},
                            args.calls, 2 * args.rounds)
    ratio_table = ["## The SavedModels through the v1 `serve` session against ONNX Runtime's graph (1 thread), "
                   "rounds taking turns", "",
                   markdown_table([{"runtime": name, "p50_ms": turns[key], "vs ONNX graph": turns[key] / turns["onnx"]}
                                   for name, key in (("ONNX Runtime session.run", "onnx"),
                                                     ("TF SavedModel, default (no XLA)", "default"),
                                                     ("TF SavedModel, default, static one-user signature",
                                                      "default_static"),
                                                     ("TF SavedModel, XLA opt-in", "xla"),
                                                     ("TF SavedModel, XLA, static one-user signature", "xla_static"))],
                                  ["runtime", "p50_ms", "vs ONNX graph"]), ""]
    print("\n".join(ratio_table), flush=True)
    overhead_table = ["## The raw-ID ONNX client against its own graph session (rounds taking turns)", "",
                      markdown_table(overhead_rows, ["threads", "graph_p50_ms", "client_p50_ms", "overhead_ms",
                                                     "overhead_vs_graph"]), ""]
    print("\n".join(overhead_table), flush=True)
    batch_rows = batch_section(learner, data, encoder, root, plain, xla, args)
    batch_table = ["## Batch requests: 1, 8 and 32 users per request (support 20, query 100 each)", "",
                   markdown_table(batch_rows, ["runtime", "users per request", "p50_ms", "p99_ms", "users_per_s",
                                               "vs_one_user", "vs_static_one_user"]), ""]
    if args.only == "latency":
        return write_report(args.out, [f"Export times: {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}", "",
                                 "## One request (1 user, support 20, query 100, 5 second-order steps)", "",
                                 markdown_table(rows, ["runtime", "p50_ms", "p99_ms", "gflops", "max_abs_diff"]), "",
                                 *ratio_table, *overhead_table, *batch_table])

    load_rows = []
    for name, call in (("TF SavedModel, default (no XLA)", signature_caller(plain, "adapt_and_score")),
                       ("TF SavedModel, XLA opt-in", signature_caller(xla, "adapt_and_score")),
                       ("ONNX Runtime (OnnxRecommender, 2 threads)", _onnx_all_buckets(learner, encoder, root))):
        load_rows.append({"runtime": name, **load_test(call, data, args.load_seconds)})
        print(load_rows[-1], flush=True)

    recommend_rows = recommend_section(args, tuple(int(n) for n in args.sizes.split(",")))
    big, big_data, big_encoder = build(100_000, "two_tower")
    path = export_saved_model(big, root, "big-two_tower", 1, encoder=big_encoder, buckets=BUCKETS, top_k=20)
    call = session_caller(path, "recommend")
    one = {k: v for k, v in request(big_data, rng).items() if k != "query_item_id"}
    call(one)
    p50, p99 = percentiles(lambda c=call: c(one), max(args.calls // 10, 5), args.rounds)
    top_rows = [{"model": "two_tower", "catalogue": 100_000, "search": "keras-rs dot product", "p50_ms": p50,
                 "p99_ms": p99}]
    print(top_rows[-1], flush=True)

    memory_rows = [memory_run("savedmodel-xla", xla, args.memory_requests),
                   memory_run("savedmodel", plain, args.memory_requests)]
    print(memory_rows, flush=True)

    update_rows = update_section(learner, data, encoder, root, plain, xla, args)

    text = "\n".join([
        f"Machine: {machine()}", "",
        "Export times: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), "",
        "## One request (1 user, support 20, query 100, 5 second-order steps)", "",
        markdown_table(rows, ["runtime", "p50_ms", "p99_ms", "gflops", "max_abs_diff"]), "",
        *ratio_table, *overhead_table, *batch_table,
        f"## Load test: 8 client threads, {args.load_seconds:.0f} s each", "",
        markdown_table(load_rows, ["runtime", "requests_per_s", "p50_ms", "p99_ms", "errors", "rss_growth_mb"]), "",
        RECOMMEND_TITLE, "", markdown_table(recommend_rows, RECOMMEND_COLUMNS), "",
        "## recommend with the two-tower model over 100,000 items (1 user, support 20, top 20, v1 session)", "",
        markdown_table(top_rows, ["model", "catalogue", "search", "p50_ms", "p99_ms"]), "",
        f"## Memory over {args.memory_requests} requests of random shapes (fresh process each)", "",
        markdown_table(memory_rows, ["runtime", "requests", "rss_after_warm_up_mb", "rss_end_mb",
                                     "maps_after_warm_up", "maps_at_each_fifth", "seconds"]), "",
        UPDATE_TITLE, "",
        markdown_table(update_rows, ["runtime", "call", "p50_ms", "p99_ms", "vs adapt on 20"]), ""])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


def update_section(learner, data, encoder, root: Path, plain: Path | None, xla: Path | None, args) -> list[dict]:
    """p50/p99 of update_state (1 new rating) and of adapt on 20 and 100 ratings, per runtime,
    for the default ``update_mode="history"`` and for ``"new"`` (a copy of the same learner)."""
    from tfmetarec.export.onnx import OnnxRecommender, export_onnx

    rng = np.random.default_rng(3)
    history = {n: {k: v for k, v in request(data, rng, 1, n, 1).items() if k != "query_item_id"} for n in (20, 100)}
    new = {"new_item_id": history[20]["support_item_id"][:, :1], "new_rating": history[20]["support_rating"][:, :1],
           "new_mask": np.ones((1, 1), np.float32), "user_id": history[20]["user_id"]}
    rows = []
    for mode in ("history", "new"):
        copy = learner
        if mode != learner.update_mode:
            copy = type(learner).from_config({**learner.get_config(), "update_mode": mode})
            copy.set_weights(learner.get_weights())  # the item table is data, copied apart
            copy.model.set_item_table(learner.model.item_table, learner.model.item_raw_ids)
        saved = {"TF SavedModel, default (no XLA)": plain, "TF SavedModel, XLA opt-in": xla}
        if mode != learner.update_mode or plain is None:
            saved = {"TF SavedModel, default (no XLA)": export_saved_model(
                copy, root, f"update-{mode}", 1, encoder=encoder, buckets=BUCKETS)}
        for name, path in saved.items():
            adapt, update = signature_caller(path, "adapt"), signature_caller(path, "update_state")
            state = {k: v.numpy() for k, v in adapt(history[20]).items()}
            calls = {"adapt on 20 ratings": lambda a=adapt: a(history[20]),
                     "adapt on 100 ratings": lambda a=adapt: a(history[100]),
                     "update_state, 1 new rating": lambda u=update, s=state: u({**s, **new})}
            if load_contract(path).static_signatures:  # TF Serving's path: the v1 session, dynamic and static
                calls["update_state, v1 session"] = lambda u=session_caller(path, "update_state"), s=state: u(
                    {**s, **new})
                static, call = static_caller(path, "update_state", {**state, **new})
                calls[f"update_state, v1 session, static `{static}`"] = call
            rows += _timed(f"{name}, update_mode={mode}", calls, args)
        folder = export_onnx(copy, root / f"onnx-update-{mode}", encoder=encoder,
                             buckets=Buckets(users=(1,), support=(8, 32, 128), query=(16,)),
                             signatures=("adapt", "update_state"))
        onnx = OnnxRecommender(folder, threads=1)
        state = onnx("adapt", history[20])
        calls = {"adapt on 20 ratings": lambda o=onnx: o("adapt", history[20]),
                 "adapt on 100 ratings": lambda o=onnx: o("adapt", history[100]),
                 "update_state, 1 new rating": lambda o=onnx, s=state: o("update_state", {**s, **new})}
        rows += _timed(f"ONNX Runtime (OnnxRecommender, 1 thread), update_mode={mode}", calls, args)
        print(rows[-6:], flush=True)
    return rows


def _timed(runtime: str, calls: dict, args) -> list[dict]:
    out = []
    for name, fn in calls.items():
        fn()
        p50, p99 = percentiles(fn, args.calls, args.rounds)
        out.append({"runtime": runtime, "call": name, "p50_ms": p50, "p99_ms": p99})
    base = next(r["p50_ms"] for r in out if r["call"] == "adapt on 20 ratings")
    for r in out:
        r["vs adapt on 20"] = r["p50_ms"] / base
    return out


def _eager_inputs(learner, encoder, req):
    """The request encoded in numpy and adapted eagerly: (state, query features)."""
    frame = pd.DataFrame({"user": req["user_id"], **{f: req[f"user_{f}"] for f in FIELDS}})
    frame["age"] = pd.to_numeric(frame["age"])
    ids, fields = encoder.encode_users(frame)
    index = pd.Index(learner.model.item_raw_ids)
    rows = lambda raw: index.get_indexer(raw.reshape(-1)).reshape(raw.shape).astype("int32")  # noqa: E731

    def part(items):
        return {"user_id": np.repeat(ids[:, None], items.shape[1], 1), "item_id": rows(items),
                "user_fields": np.repeat(fields[:, None], items.shape[1], 1)}

    support = {**part(req["support_item_id"]), "rating": req["support_rating"], "mask": req["support_mask"]}
    return learner.adapt(support), part(req["query_item_id"])


def _onnx_feeds(client, req) -> dict:
    """The encoded, padded inputs the client would send for ``req`` (support bucket 32, query 128)."""
    ids, fields = client._users({k: np.asarray(v) for k, v in req.items()})
    pad = lambda a, n: np.pad(a, [(0, 0), (0, n - a.shape[1])])  # noqa: E731
    return {"user_index": ids, "user_fields": fields, "support_item": pad(client._rows(req["support_item_id"]), 32),
            "support_rating": pad(req["support_rating"], 32), "support_mask": pad(req["support_mask"], 32),
            "query_item": pad(client._rows(req["query_item_id"]), 128)}


def _onnx_all_buckets(learner, encoder, root: Path):
    from tfmetarec.export.onnx import OnnxRecommender, export_onnx

    folder = export_onnx(learner, root / "onnx-all", encoder=encoder,
                         buckets=Buckets(users=(1,), support=(8, 32), query=(16, 128)), signatures=("adapt_and_score",))
    client = OnnxRecommender(folder, threads=2)
    return lambda req: client("adapt_and_score", req)


def _row(fn, got, eager, args) -> dict:
    fn()
    p50, p99 = percentiles(fn, args.calls, args.rounds)
    return {"p50_ms": p50, "p99_ms": p99, "gflops": FLOPS / (p50 / 1e3) / 1e9,
            "max_abs_diff": float(np.abs(np.asarray(got) - eager).max())}


if __name__ == "__main__":
    sys.exit(main())
