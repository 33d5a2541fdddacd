"""Episodes: tasks with support and query sets, padded and masked for XLA."""

from __future__ import annotations

from tfmetarec.tasks.episode import (
    Rows,
    TaskSet,
    build_tasks,
    group_tasks,
    join_task_sets,
    limit_support,
    pad_episode,
)
from tfmetarec.tasks.samplers import EpisodeSampler, episode_signature, eval_batches, support_buckets

__all__ = [
    "EpisodeSampler",
    "Rows",
    "TaskSet",
    "build_tasks",
    "episode_signature",
    "eval_batches",
    "group_tasks",
    "join_task_sets",
    "limit_support",
    "pad_episode",
    "support_buckets",
]
