"""The candidate stage of a two-stage ``recommend``: a local linear model of the adapted score.

Scoring every catalogue item exactly costs one pass of the model's decision layers per
item: over 100,000 items that is most of a request. The candidate stage estimates every
item's *adapted* score with a first-order (Taylor) model and leaves exact scoring to the
best ``candidates`` of them:

* at export, the items' representations (what the model's item side computes from their
  content: constant at serving time, as long as adaptation leaves the item side alone) are
  grouped by k-means into ``anchors`` clusters; each item keeps its deviation ``r - c`` from
  its cluster's centre ``c`` in a few coordinates (:func:`score_directions`: the directions
  in which the deviations move the score, judged by a sample of the gradients that adapted
  models have at the centres), laid out in blocks of ``block`` items, every block inside one
  cluster (a cluster's last block padded);
* per request, the adapted model is evaluated at each centre together with its gradient
  ``g`` with respect to the item representation (a forward and backward pass over
  ``anchors`` rows), and every item ``r`` of that cluster is estimated at
  ``f(c) + g·A(r - c)`` (``A`` the low-rank map of those coordinates) plus its item offset:
  one batched matmul;
* the best ``candidates`` estimates are chosen among those above a threshold read from a sample
  of them (:func:`best_slots`; a full ``top_k`` over 100,000 estimates cost more than the
  estimate itself).

Why not an approximate nearest-neighbour index (ScaNN, keras-rs' search): MeLU's score is not
a dot product of a user vector and an item vector, so no single query vector finds its top
items, and an index library's ops are not in stock TF Serving. Probing only the most promising
blocks (as an inverted-file index does) missed a third of the top 100 on the serving
benchmark's catalogue: the best items are spread over many clusters, so every item is
estimated. The blocks are plain variables and a matmul, so the SavedModel, XLA and ONNX run
the same stage. BENCHMARKS.md has the recall and the latency against exhaustive scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfmetarec.models import functional as F
from tfmetarec.models.base import table_value

ITEMS_PER_ANCHOR = 200  # 500 clusters at 100,000 items: 1,500 candidates keep Recall@100 0.965 there (0.94 at 400)
FIT_ROWS = 32_768  # k-means centres are fitted on at most this many items (all items are assigned)
ASSIGN_CHUNK = 16_384
BLOCKS_PER_CLUSTER = 8  # a cluster's mean size over 8: 6 % of the slots padded at 100,000 items, not 35 %
SAMPLE_STRIDE = 16  # best_slots reads its threshold from every 16th score ...
SAMPLE_HEADROOM = 4.0  # ... placed ~4 standard deviations of the count let through above the count asked for


def kmeans(x: np.ndarray, clusters: int, iterations: int = 12, seed: int = 0) -> np.ndarray:
    """The cluster of every row of ``x`` ``[n, d]`` (Lloyd's k-means from ``clusters`` rows drawn
    at random, centres fitted on a sample of at most ``FIT_ROWS`` rows); empty clusters vanish."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    sample = x[rng.choice(len(x), min(len(x), FIT_ROWS), replace=False)]
    centres = sample[rng.choice(len(sample), min(clusters, len(sample)), replace=False)].copy()
    for _ in range(iterations):
        near = _nearest(sample, centres)
        counts = np.bincount(near, minlength=len(centres))
        sums = np.zeros_like(centres)
        np.add.at(sums, near, sample)
        kept = counts > 0
        centres = sums[kept] / counts[kept, None]
    near = np.concatenate([_nearest(x[lo:lo + ASSIGN_CHUNK], centres) for lo in range(0, len(x), ASSIGN_CHUNK)])
    return np.unique(near, return_inverse=True)[1].astype(np.int32)


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distance = (centres ** 2).sum(1)[None, :] - 2.0 * x @ centres.T
    return distance.argmin(1)


def score_directions(deviation: np.ndarray, gradients: np.ndarray | None, variance: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The rank-``k`` map ``A = S I^T`` (``S``, ``I`` both ``[d, k]``) for which ``g·A·δ`` is closest
    to ``g·δ`` in mean square over the ``deviation`` rows ``δ`` ``[n, d]`` and a sample of
    ``gradients`` ``g`` ``[m, d]``, with the fewest directions that keep ``variance`` of
    ``E (g·δ)²``: returns ``(S, I)``, so a slope is ``g S`` and an item's coordinates ``δ I``.

    With the second moments ``G`` (gradients) and ``D`` (deviations), ``A = G^-½ U Σ V^T D^-½``
    from the leading singular triplets of ``G^½ D^½`` (pseudo-inverses: a direction no gradient
    takes costs nothing). Without gradients (``G = I``) these are the deviations' principal
    directions. Weighing the directions by the gradients pays where the score reads the item
    representation through a layer narrower than it (MeLU: 128 item dims through 64 units).
    """
    width = deviation.shape[1]
    second = deviation.T.astype(np.float64) @ deviation / max(len(deviation), 1)
    moment = np.eye(width) if gradients is None else gradients.T.astype(np.float64) @ gradients / len(gradients)
    if not np.any(moment):  # no gradient moves the score: nothing to weigh by
        moment = np.eye(width)
    (d_half, d_inverse), (g_half, g_inverse) = _half_powers(second), _half_powers(moment)
    left, strength, right = np.linalg.svd(g_half @ d_half)
    kept = np.cumsum(strength ** 2) / max(float((strength ** 2).sum()), 1e-30)
    rank = int(min(width, np.searchsorted(kept, variance) + 1))
    slope = g_inverse @ left[:, :rank]
    item = d_inverse @ right[:rank].T * strength[:rank]
    return slope.astype(np.float32), item.astype(np.float32)


def _half_powers(moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``M^½`` and the pseudo-inverse of ``M^½`` of a symmetric positive semi-definite ``M``."""
    values, vectors = np.linalg.eigh(moment)
    values = values.clip(0)
    kept = values > values.max() * 1e-9
    half = (vectors * np.sqrt(values)) @ vectors.T
    return half, (vectors[:, kept] / np.sqrt(values[kept])) @ vectors[:, kept].T


def best_slots(scores: tf.Tensor, k: int) -> tf.Tensor:
    """Indices ``[T, k]`` of each row's ``k`` largest ``scores`` ``[T, N]``, in ascending order:
    the set ``tf.math.top_k`` chooses (ties to the lower index), found faster than it over a long row.

    A threshold read from every ``SAMPLE_STRIDE``-th score (its rank in the sample placed to let
    through ``k`` scores plus ``SAMPLE_HEADROOM`` standard deviations of that count) leaves few
    scores to select from, so the exact selection runs over those alone, and the chosen ones are
    read back in index order without a sort; when it lets fewer than ``k`` through in some row,
    every row is selected in full. Under XLA (no shape may depend on the data) and over rows too
    short to gain: ``top_k`` itself, then sorted.
    """
    n = scores.shape[-1]
    # ~STRIDE * r scores pass the sample's r-th best, give or take STRIDE * sqrt(r): r - h sqrt(r) = k / STRIDE
    rank = int(np.ceil(((SAMPLE_HEADROOM + np.sqrt(SAMPLE_HEADROOM ** 2 + 4 * k / SAMPLE_STRIDE)) / 2) ** 2))

    def in_full() -> tf.Tensor:
        return tf.sort(tf.math.top_k(scores, k=k, sorted=False).indices, axis=1)

    if F.compiled_by_xla() or n is None or rank * SAMPLE_STRIDE >= n:  # (then the sample holds > rank scores)
        return in_full()
    threshold = tf.reduce_min(tf.math.top_k(scores[:, ::SAMPLE_STRIDE], k=rank, sorted=False).values, 1, keepdims=True)
    through = scores >= threshold
    counts = tf.reduce_sum(tf.cast(through, tf.int32), axis=1)

    def among_those_through() -> tf.Tensor:
        pairs = tf.where(through)  # [P, 2] (row, slot), row by row, slots ascending
        row, slot = tf.cast(pairs[:, 0], tf.int32), tf.cast(pairs[:, 1], tf.int32)
        at = tf.stack([row, tf.range(tf.shape(row)[0]) - tf.gather(tf.cumsum(counts, exclusive=True), row)], 1)
        users = tf.shape(scores)[0]
        shape = tf.stack([users, tf.maximum(tf.reduce_max(counts), k)])  # k: no user at all
        values = tf.tensor_scatter_nd_update(tf.fill(shape, tf.constant(-np.inf, scores.dtype)), at,
                                             tf.gather_nd(scores, pairs))
        _, best = tf.math.top_k(values, k=k, sorted=False)
        # the chosen columns marked, then read back row by row: k per row, in slot order
        rows = tf.broadcast_to(tf.range(users)[:, None], tf.shape(best))
        chosen = tf.scatter_nd(tf.stack([rows, best], -1), tf.ones_like(best), shape)
        columns = tf.reshape(tf.cast(tf.where(chosen > 0)[:, 1], tf.int32), [users, k])
        return tf.gather(tf.scatter_nd(at, slot, shape), columns, batch_dims=1)

    return tf.cond(tf.reduce_min(counts) >= k, among_those_through, in_full)


class TaylorCandidates(tf.Module):
    """Estimated adapted scores of a whole catalogue, from a few exact ones (module docstring).

    Args:
        representations: ``[N, d]`` the catalogue's item representations, in catalogue order.
        offsets: ``[N]`` each item's rating offset (added to its estimate).
        anchors: the number of clusters (their centres are where the model is linearised).
        block: items per block of the batched matmul (default: an eighth of a cluster's mean size,
            8 to 512: each cluster's last block is padded, so smaller blocks leave fewer padded slots).
        variance: the share of the deviations' mean square effect on the score the kept directions
            hold (:func:`score_directions`).
        gradients: given the centres ``[J, d]``, a sample of the gradients ``[m, d]`` adapted models
            have there (None: the deviations' principal directions are kept).
    """

    def __init__(self, representations: np.ndarray, offsets: np.ndarray, anchors: int, block: int | None = None,
                 variance: float = 0.97, gradients: Callable[[np.ndarray], np.ndarray] | None = None):
        super().__init__()
        reps = np.asarray(representations, np.float32)
        if reps.ndim != 2 or len(reps) == 0 or not np.isfinite(reps).all():
            raise ValueError(f"Item representations must be a finite [items, dim] array, got shape {reps.shape}.")
        cluster = kmeans(reps, anchors)
        count = int(cluster.max()) + 1
        block = int(block or np.clip(-(-len(reps) // count) // BLOCKS_PER_CLUSTER, 8, 512))
        sizes = np.bincount(cluster, minlength=count)
        sums = np.zeros((count, reps.shape[1]), np.float64)
        np.add.at(sums, cluster, reps)
        centres = (sums / sizes[:, None]).astype(np.float32)
        deviation = reps - centres[cluster]
        sample = None if gradients is None else np.asarray(gradients(centres), np.float32).reshape(-1, reps.shape[1])
        slope_basis, self.item_basis = score_directions(deviation, sample, variance)
        rank = slope_basis.shape[1]
        order = np.argsort(cluster, kind="stable")
        blocks, owners = [], []
        for j, members in enumerate(np.split(order, np.cumsum(sizes)[:-1])):  # each cluster's items
            for lo in range(0, len(members), block):
                part = members[lo:lo + block]
                blocks.append(np.pad(part, (0, block - len(part)), constant_values=-1))
                owners.append(j)
        position = np.stack(blocks).astype(np.int32)  # [B, M] catalogue position, -1 for padding
        real = position >= 0
        safe = np.where(real, position, 0)
        self.anchors, self.block, self.rank, self.size = count, block, rank, len(reps)
        self.padding = float(1.0 - real.mean())
        self.centres = tf.Variable(centres, trainable=False, name="candidate_centres")
        self.basis = tf.Variable(slope_basis, trainable=False, name="candidate_basis")  # a gradient's slopes: g @ basis
        self.owner = tf.Variable(np.asarray(owners, np.int32), trainable=False, name="candidate_owner")
        self.position = tf.Variable(position, trainable=False, name="candidate_position")
        slot = np.empty(len(reps), np.int32)  # catalogue position -> its slot
        slot[position[real]] = np.flatnonzero(real.reshape(-1))
        self.slot = tf.Variable(slot, trainable=False, name="candidate_slot")
        coordinates = deviation @ self.item_basis  # [N, rank]
        projected = np.where(real[..., None], coordinates[safe], 0.0).astype(np.float32)  # [B, M, rank]
        projected = np.concatenate([projected, real[..., None].astype(np.float32)], axis=2)  # and a 1: f(c)'s weight
        self.deviation = tf.Variable(np.ascontiguousarray(projected.transpose(0, 2, 1)), trainable=False,
                                     name="candidate_deviation")  # [B, rank + 1, M]: each block a wide product
        base = np.where(real, np.asarray(offsets, np.float32)[safe], -np.inf).astype(np.float32)
        self.base = tf.Variable(base, trainable=False, name="candidate_offsets")  # -inf: padding is never chosen

    def estimate(self, value: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        """Estimated scores ``[T, B * M]`` (block-major slots; padding -inf) from the model's value
        ``[T, J]`` and gradient ``[T, J, d]`` at the ``J`` cluster centres."""
        width, rank = self.basis.shape
        slope = tf.reshape(tf.matmul(tf.reshape(gradient, [-1, width]), self.basis), [-1, self.anchors, rank])
        coefficients = tf.transpose(tf.concat([slope, value[:, :, None]], -1), [1, 0, 2])  # [J, T, rank + 1]
        # [B, T, M]: g.P(r - c) + f(c) in one product, the big operand as stored
        per_item = tf.matmul(tf.gather(coefficients, self.owner), self.deviation)
        estimate = tf.transpose(per_item, [1, 0, 2]) + self.base[None]
        return tf.reshape(estimate, [-1, int(self.position.shape[0]) * self.block])  # a static slot axis

    def shortlist(self, value: tf.Tensor, gradient: tf.Tensor, candidates: int,
                  left_out: tf.Tensor | None = None, is_left_out: tf.Tensor | None = None) -> tf.Tensor:
        """The catalogue positions ``[T, candidates]`` of the best estimates, in slot order (so that
        exact scores that tie resolve alike in TensorFlow and ONNX Runtime). The positions
        ``left_out [T, R]`` where ``is_left_out`` (the items a user rated) are never chosen, so
        every candidate can be recommended; at least ``candidates`` others must remain."""
        estimate = self.estimate(value, gradient)
        if left_out is not None:
            slots = tf.gather(table_value(self.slot), left_out)
            rows = tf.broadcast_to(tf.range(tf.shape(slots)[0])[:, None], tf.shape(slots))
            # added, not assigned: a position listed twice (or a padded row's 0) cannot undo a -inf
            penalty = tf.where(is_left_out, tf.constant(-np.inf, estimate.dtype), tf.zeros_like(slots, estimate.dtype))
            estimate = tf.tensor_scatter_nd_add(estimate, tf.stack([rows, slots], -1), penalty)
        # in slot order: one order for every runtime
        return tf.gather(tf.reshape(self.position, [-1]), best_slots(estimate, candidates))


__all__ = ["ITEMS_PER_ANCHOR", "TaylorCandidates", "best_slots", "kmeans", "score_directions"]
