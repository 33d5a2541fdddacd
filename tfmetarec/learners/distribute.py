"""Building ``tf.distribute`` strategies for meta-training, and what a worker needs to know.

:class:`~tfmetarec.learners.MetaTrainer` takes the strategy these functions build:

* ``"default"``: no distribution (one device; ``make_strategy`` returns ``None``).
* ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over the local GPUs (or the
  devices given, e.g. logical CPU devices made by :func:`split_cpu`).
* ``"multi_worker"``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the
  processes named in ``TF_CONFIG``, with ring all-reduce and a timeout on every
  collective, so a peer that stalls makes the others fail instead of wait forever.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
DEFAULT_TIMEOUT_SECONDS = 600.0
"""How long a collective (a gradient all-reduce) waits for its peers before failing. The
first one also waits while every worker starts and compiles, so keep it generous."""


class ClusterError(RuntimeError):
    """A peer worker died or stopped answering during distributed meta-training."""


def split_cpu(count: int) -> list[str]:
    """Split the first CPU into ``count`` logical devices (call before TensorFlow runs
    anything) and return their names: a :class:`MirroredStrategy` over them runs several
    replicas on one machine, as tests and CPU-only machines need."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != count:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as err:
            raise RuntimeError(f"Cannot split the CPU into {count} devices: TensorFlow already initialised its "
                               f"devices ({err}). Call split_cpu first thing in the process.") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")][:count]


def read_tf_config() -> dict:
    """``TF_CONFIG`` parsed and checked: a cluster with workers and this process's task."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("The multi_worker strategy reads the cluster from the TF_CONFIG environment variable, "
                         "which is not set. Set it on every worker, e.g. "
                         '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                         '"index": 0}} (see README, "More than one device or machine").')
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}") from None
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ValueError(f"TF_CONFIG needs cluster.worker, a list of host:port addresses; got {text[:200]!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int):
        raise ValueError(f"TF_CONFIG needs task.type (one of {sorted(cluster)}) and an integer task.index; "
                         f"got {text[:200]!r}")
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG task.index {task['index']} is outside the {len(cluster[task['type']])} "
                         f"{task['type']} address(es).")
    return conf


def make_strategy(
    name: str = "default",
    *,
    devices: Sequence[str] | None = None,
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> tf.distribute.Strategy | None:
    """The strategy called ``name`` (one of :data:`STRATEGIES`); ``None`` for ``"default"``.

    ``devices`` picks the mirrored strategy's devices (default: all GPUs, else the CPU).
    ``timeout_seconds`` bounds each collective of the multi-worker strategy (``None``: wait
    forever, which a stalled peer turns into a hang). Create the multi-worker strategy
    first thing in the program, before other TensorFlow work.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose from {STRATEGIES}.")
    if name == "default":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) if devices else None)
    read_tf_config()
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ValueError(f"timeout_seconds must be positive or None, got {timeout_seconds}.")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=timeout_seconds,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_distributed(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether ``strategy`` is a real one (not ``None`` nor TensorFlow's default strategy)."""
    if strategy is None:
        return False
    return not (strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy())


def worker_of(strategy: tf.distribute.Strategy | None) -> tuple[int, int]:
    """``(index, count)`` of this process among the workers (``(0, 1)`` on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not is_distributed(strategy):
        return 0, 1
    spec = resolver.cluster_spec()
    jobs = spec.jobs if spec else []
    if not jobs:
        return 0, 1
    order = [job for job in ("chief", "worker") if job in jobs]
    index, count = 0, 0
    for job in order:
        if job == resolver.task_type:
            index = count + int(resolver.task_id or 0)
        count += spec.num_tasks(job)
    return index, max(count, 1)


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes checkpoints, TensorBoard logs and the run's files."""
    if not is_distributed(strategy):
        return True
    return bool(strategy.extended.should_checkpoint)


def replicas(strategy: tf.distribute.Strategy | None) -> int:
    """Replicas training in lock step (1 without a strategy)."""
    return int(strategy.num_replicas_in_sync) if is_distributed(strategy) else 1


def check_batch(batch_size: int, strategy: tf.distribute.Strategy | None) -> int:
    """The per-replica task batch of a global ``batch_size``; a clear error when the replicas
    cannot share it equally."""
    count = replicas(strategy)
    if batch_size % count:
        raise ValueError(f"The global batch of {batch_size} tasks does not split equally over {count} replicas; "
                         f"use a batch size that is a multiple of {count}.")
    return batch_size // count


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "STRATEGIES",
    "ClusterError",
    "check_batch",
    "is_chief",
    "is_distributed",
    "make_strategy",
    "read_tf_config",
    "replicas",
    "split_cpu",
    "worker_of",
]
