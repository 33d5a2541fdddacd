"""Bounded shapes: with XLA on, requests of any shape (scoring, and a two-stage recommend; through
the dynamic signatures and the static one-user ones) compile nothing new once every bucket has run
(each XLA compile leaves ~136 memory maps in a process, which is how a server that
sees varied shapes dies at the kernel's map limit)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r'''
import numpy as np, tensorflow as tf
import serving_helpers as H
from tfmetarec.export import Buckets, ServingModule, bucketed_request

def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)

world = H.world()
learner = H.trained(world, perturb=0.05)
buckets = Buckets(users=(1, 2), support=(8, 16), query=(8, 16))
module = ServingModule(learner, world[2], buckets, jit_compile=True, top_k=5, candidates=30, exhaustive_up_to=0)
assert module.core.search == "two-stage"  # recommend's candidate stage is compiled per bucket too
print("warmed", module.warm_up())
rng = np.random.default_rng(0)
request = lambda t, s, q: {k: tf.constant(v) for k, v in H.random_request(world, rng, t, s, q).items()}
rated = lambda t, s: {k: v for k, v in request(t, s, 1).items() if k != "query_item_id"}
for t in (1, 2):
    for s in (8, 16):
        module.recommend(rated(t, s))
        for q in (8, 16):
            module.adapt_and_score(request(t, s, q))
static = {key: module.static_function(key) for key in module.contract.static_signatures
          if key.startswith(("adapt_and_score.", "recommend."))}
assert len(static) == 4, sorted(static)

def padded(signature, raw):  # what the REST and gRPC builders send a one-user request as
    key, arrays = bucketed_request(module.contract, signature, raw)
    return static[key], {k: tf.constant(v) for k, v in arrays.items()}

for s in (8, 16):
    for q in (8, 16):
        fn, inputs = padded("adapt_and_score", H.random_request(world, rng, 1, s, q))
        fn(inputs)
    fn, inputs = padded("recommend", H.random_request(world, rng, 1, s, None))
    fn(inputs)
before = maps()
shapes = set()
for _ in range(60):
    t, s, q = int(rng.integers(1, 3)), int(rng.integers(0, 17)), int(rng.integers(1, 17))
    shapes.add((t, s, q))
    scores = module.adapt_and_score(request(t, s, q))["scores"]
    assert scores.shape == (t, q)
    assert module.recommend(rated(t, s))["item_id"].shape == (t, 5)
    fn, inputs = padded("adapt_and_score", H.random_request(world, rng, 1, s, q))  # the static signatures too
    assert fn(inputs)["scores"].shape == (1, q)
    fn, inputs = padded("recommend", H.random_request(world, rng, 1, s, None))
    assert fn(inputs)["item_id"].shape == (1, 5)
after = maps()
# the control: the same XLA function at three unpadded shapes compiles three times
u, f, i, r, m = module._empty_support(1, 5)
for q in (3, 5, 7):
    module._fn.adapt_score(u, f, i, r, m, tf.zeros([1, q], tf.int32))
control = maps()
print("shapes", len(shapes), "maps", before, after, control)
'''


def test_random_request_shapes_compile_nothing_after_warm_up():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "export"),
                                                      str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("shapes")][-1].split()
    shapes, before, after, control = int(line[1]), int(line[3]), int(line[4]), int(line[5])
    assert shapes > 30, shapes  # many distinct request shapes ...
    assert after - before < 60, (before, after)  # ... and no new compile
    assert control - after > 150, (after, control)  # while three new raw shapes would compile three programs
