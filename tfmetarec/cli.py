"""``tfmetarec`` command line: one call into :mod:`tfmetarec.workflows` (or :mod:`tfmetarec.presets`)
per subcommand.

Arguments, settings and paths are checked before TensorFlow is imported, so a mistake is
reported (exit status 2) at once; TensorFlow then loads quietly unless ``--verbose``. A
learner or model setting is any keyword argument of its constructor: ``--set
learner.inner_lr=0.01``, ``--set model.hidden_units=64,64``, ``--set
learner.query_loss.ranking_weight=0.3``, ``--set train.max_support=64``; the typed flags
(``--inner-lr``, ``--hidden-units``, ...) are shortcuts for the common ones.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfmetarec.config import (
    DATASETS,
    LEARNERS,
    MODELS,
    SELECT_METRICS,
    STRATEGIES,
    TASK_KEYS,
    ExperimentConfig,
    LearnerConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    apply_settings,
    parse_settings,
)
from tfmetarec.export.contract import CANDIDATES, EXHAUSTIVE_UP_TO, Buckets
from tfmetarec.objectives import RANKING_LOSSES

CHECKPOINT_EVERY = 100


def _integer(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _number(minimum: float = 0.0, strict: bool = False, maximum: float | None = None):
    """An argparse type: a finite number >= ``minimum`` (> with ``strict``), <= ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = _integer(1)
NON_NEGATIVE = _integer(0)


def _count_or_auto(text: str) -> int | str:
    """A positive count, or 'auto'."""
    return "auto" if text.strip().lower() == "auto" else POSITIVE(text)

EXAMPLES = """examples:
  tfmetarec quickstart                                  # synthetic data, train + evaluate
  tfmetarec quickstart --dataset movielens-100k         # the real 100K set (see TFMETAREC_DATA_DIR)
  tfmetarec quickstart --model cf --task-key item --adapt item_prior   # new items adapt from their first ratings
  tfmetarec train --dataset movielens-1m --data-dir ~/ml-1m --workdir runs/ml1m
  tfmetarec train --set learner.inner_lr=0.01 --set model.hidden_units=64,64   # any constructor option
  tfmetarec train --strategy mirrored --batch-size 64 --workdir runs/gpus   # every local GPU
  tfmetarec evaluate --workdir runs/ml1m
  tfmetarec export --workdir runs/ml1m --out serving --onnx   # TF Serving SavedModel + ONNX
  tfmetarec recommend --workdir runs/ml1m --ratings 50:5,172:4,133:1 --user gender=F,age=25 -k 10
  tfmetarec finetune --from melu-maml-ml100k --dataset movielens-1m --data-dir ~/ml-1m --workdir runs/ft
"""

# The typed flags: argparse destination -> the setting it sets (a value, or a constant for a switch).
SHORTCUTS: dict[str, tuple[str, Any]] = {
    "embedding_dim": ("model.embedding_dim", None),
    "hidden_units": ("model.hidden_units", None),
    "inner_steps": ("learner.inner_steps", None),
    "inner_lr": ("learner.inner_lr", None),
    "first_order": ("learner.first_order", True),
    "adapt": ("learner.adapt", None),
    "learn_inner_lr": ("learner.learn_inner_lr", None),
    "multi_step_loss": ("learner.multi_step_loss", True),
    "msl_anneal_steps": ("learner.msl_anneal_steps", None),
    "support_only": ("learner.train_on_query", False),
    "hidden_dim": ("learner.hidden_dim", None),
    "pooling": ("learner.pooling", None),
    "shrinkage": ("learner.shrinkage", None),
    "item_shrinkage": ("learner.shrinkage", None),
    "ranking_weight": ("learner.query_loss.ranking_weight", None),
    "ranking_loss": ("learner.query_loss.ranking_loss", None),
    "meta_steps": ("train.meta_steps", None),
    "pretrain_steps": ("train.pretrain_steps", None),
    "batch_size": ("train.batch_size", None),
    "outer_lr": ("train.outer_lr", None),
    "no_xla": ("train.jit_compile", False),
    "steps_per_execution": ("train.steps_per_execution", None),
    "task_chunks": ("train.task_chunks", None),
    "strategy": ("train.strategy", None),
    "fixed_tasks": ("train.fixed_tasks", True),
    "fit_buckets": ("train.fit_buckets", True),
    "smallest_bucket": ("train.smallest_bucket", None),
    "padded_min_real": ("train.padded_min_real", None),
    "split": ("split.method", None),
    "new_item_year": ("split.new_item_year", None),
    "query_size": ("split.query_size", None),
    "min_support": ("split.min_support", None),
    "validation_fraction": ("split.validation_fraction", None),
    "validation_item_fraction": ("split.validation_item_fraction", None),
    "select_every": ("train.select_every", None),
    "select_patience": ("train.select_patience", None),
    "select_metric": ("train.select_metric", None),
    "id_dropout": ("train.id_dropout", None),
    "no_trim_supports": ("train.trim_supports", False),
    "finetune_lr": ("train.finetune_lr", None),
    "item_warmup": ("train.item_warmup", None),
    "zip_prefix_len": ("features.zip_prefix_len", None),
    "keep_fields": ("features.keep_fields", None),
    "drop_fields": ("features.drop_fields", None),
    "list_columns": ("features.list_columns", None),
    "list_separator": ("features.list_separator", None),
    "item_vectors": ("features.item_vectors", None),
    "data_dir": ("data_dir", None),
    "item_side_file": ("item_side_file", None),
    "split_file": ("split_file", None),
    "task_key": ("task_key", None),
}


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    s, t = SplitConfig(), TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="synthetic", help="which data to use (default: %(default)s)")
    g.add_argument("--data-dir", help="folder holding the dataset's files (default: $TFMETAREC_DATA_DIR/movielens-100k, movielens-1m or ml-latest-small)")
    g.add_argument("--item-side-file", help="MovieLens only: CSV/TSV of item content keyed by item ID (rate, directors, "
                   "actors ...; a column named like a built-in one, e.g. genres or year, replaces it)")
    g.add_argument("--item-vectors", help="a file of item vectors (text or image embeddings ...): .npz with arrays "
                   "'item' (IDs) and 'vectors' [items, dim], or CSV/TSV/Parquet with an 'item' column and one column "
                   "per dimension; items it leaves out get a learned default; each vector is scaled to length 1 "
                   "(--set features.normalize_vectors=false keeps it)")
    g.add_argument("--list-columns", type=_names, help="side-file columns that hold lists, comma-separated (default: "
                   "a column is a list when some cell holds the separator)")
    g.add_argument("--list-separator", help="what separates a list cell's values in the side file (default: '|'; "
                   "MeLU's files: ', ')")
    g.add_argument("--keep-fields", type=_names, help="use only these feature fields, comma-separated (e.g. "
                   "gender,age,occupation,zip,rate,genres,director,actors)")
    g.add_argument("--drop-fields", type=_names, help="use every feature field but these, comma-separated (e.g. year; "
                   "a dropped year still dates the items for the split)")
    g.add_argument("--zip-prefix-len", type=POSITIVE, help="leading characters of a zip code kept (default: 2; MeLU: 5)")
    g.add_argument("--split", choices=("melu", "time"), help=f"cold-start split protocol (default: {s.method})")
    g.add_argument("--split-file", help="use a published split instead of drawing one: a CSV/TSV with columns "
                   "user,item,rating,partition,role, or a folder (or one file) of MeLU's <state>.json / <state>_y.json")
    g.add_argument("--new-item-year", type=int, help="items released in or after this year are new (default: per dataset)")
    g.add_argument("--query-size", type=POSITIVE, help=f"query ratings per task (default: {s.query_size})")
    g.add_argument("--min-support", type=POSITIVE, help=f"least support ratings of an evaluation task (default: {s.min_support})")
    g.add_argument("--validation-fraction", type=_number(0.0, maximum=0.99),
                   help=f"share of the meta-training users held out to choose the fine-tuning step size; 0 holds out "
                        f"none, as MeLU does (then give --finetune-lr) (default: {s.validation_fraction})")
    g.add_argument("--validation-item-fraction", type=_number(0.0, maximum=0.5),
                   help="share of the existing items held out of meta-training as pseudo-new items, whose ratings "
                        "become validation tasks with new items (see --select-every) "
                        f"(default: {s.validation_item_fraction})")
    g.add_argument("--task-key", choices=TASK_KEYS, help="one task per user (user cold start) or per item (item cold start: pair with an item-side --adapt such as cf's item_prior) (default: user)")
    g = p.add_argument_group("model (any constructor option: --set model.NAME=VALUE)")
    g.add_argument("--model", choices=MODELS, default="melu", help="rating model (default: %(default)s)")
    g.add_argument("--embedding-dim", type=POSITIVE, help="feature embedding size (default: the model's, 32)")
    g.add_argument("--hidden-units", type=POSITIVE, nargs="+", help="decision layer widths (default: the model's own)")
    g = p.add_argument_group("meta-learner (any constructor option: --set learner.NAME=VALUE)")
    g.add_argument("--learner", choices=LEARNERS, default="maml", help="meta-learner (default: %(default)s)")
    g.add_argument("--inner-steps", type=POSITIVE, help="adaptation steps per task (default: 5)")
    g.add_argument("--inner-lr", type=_number(0.0, strict=True), help="adaptation learning rate (default: 0.05)")
    g.add_argument("--first-order", action="store_true", help="first-order MAML (no second-order terms)")
    g.add_argument("--adapt", help="the model's parameter group that adapts: all, decision, head, or a model's own (cf: user, item_prior) (default: decision)")
    g.add_argument("--learn-inner-lr", choices=("fixed", "per_parameter", "per_layer_step"),
                   help="maml: learned inner rates, per parameter (Meta-SGD) or per layer and step (MAML++) (default: fixed)")
    g.add_argument("--multi-step-loss", action="store_true", help="maml: MAML++ multi-step query loss")
    g.add_argument("--msl-anneal-steps", type=NON_NEGATIVE, help="maml: outer steps to anneal the multi-step loss onto the last step, 0 = fixed (default: 0)")
    g.add_argument("--support-only", action="store_true", help="reptile: inner steps on the support only (default: support and query rows)")
    g.add_argument("--hidden-dim", type=POSITIVE, help="prototype, matching, task_encoder: projection width (default: 32)")
    g.add_argument("--pooling", choices=("mean", "attention"), help="task_encoder: set pooling (default: attention)")
    g.add_argument("--shrinkage", type=_number(), help="prototype, matching, task_encoder: initial support pseudo-count (default: 1); item_mean: pseudo-count toward the global mean (default: 5)")
    g.add_argument("--item-shrinkage", type=_number(), help="item_mean: the same as --shrinkage")
    g.add_argument("--ranking-weight", type=_number(0.0, maximum=1.0),
                   help="share of the query loss given to a ranking loss: (1-w)*MSE + w*ranking (default: 0)")
    g.add_argument("--ranking-loss", choices=RANKING_LOSSES, help="the ranking loss --ranking-weight mixes in (default: pairwise)")
    g.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting: learner.<option>, model.<option> (the constructor's keyword arguments), "
                        "learner.query_loss.<field>, train.<field>, split.<field>; repeatable")
    g = p.add_argument_group("training")
    g.add_argument("--meta-steps", type=POSITIVE, help=f"meta-training steps (default: {t.meta_steps})")
    g.add_argument("--pretrain-steps", type=NON_NEGATIVE, help=f"steps of the global baseline (default: {t.pretrain_steps})")
    g.add_argument("--batch-size", type=POSITIVE, help=f"tasks per step (default: {t.batch_size})")
    g.add_argument("--outer-lr", type=_number(0.0, strict=True), help=f"outer (Adam) learning rate (default: {t.outer_lr})")
    g.add_argument("--no-xla", action="store_true", help="run without XLA compilation")
    g.add_argument("--steps-per-execution", type=POSITIVE,
                   help=f"meta-steps per compiled call: more cuts the fixed per-step cost (default: {t.steps_per_execution})")
    g.add_argument("--task-chunks", type=POSITIVE,
                   help="compute each step's meta-gradients on at most this many equal slices of the task batch, "
                        "run on different CPU cores at once: the same gradients (default: 2 with XLA on a CPU, else 1)")
    g.add_argument("--strategy", choices=STRATEGIES,
                   help="distribute training: mirrored = the local GPUs; multi_worker = the processes named in "
                        "TF_CONFIG (run the same command on every worker); --batch-size is the global batch "
                        f"(default: {t.strategy})")
    g.add_argument("--fixed-tasks", action="store_true",
                   help="with --split-file: meta-train on the file's own support/query tasks; by default each step "
                        "draws a new query from a meta-training user's ratings and ignores the file's roles there")
    g.add_argument("--smallest-bucket", type=POSITIVE,
                   help="the smallest meta-training support bucket (then the powers of two above it); smaller "
                        "supports are padded to it; with --no-trim-supports, the buckets' count before the padded "
                        f"stream's floor adds any (default: {t.smallest_bucket})")
    g.add_argument("--fit-buckets", action="store_true",
                   help="place the meta-training support buckets where the tasks' support sizes pad the fewest rows "
                        "(default: powers of two; padded supports with --padded-min-real fit theirs anyway); "
                        "another episode stream")
    g.add_argument("--no-trim-supports", action="store_true",
                   help="pad each meta-training support up to its bucket instead of trimming it to a random subset "
                        "the size of the largest bucket it fills (the default: almost no padded row, faster steps)")
    g.add_argument("--padded-min-real", type=_number_or_off,
                   help="with --no-trim-supports: fit the support buckets to the supports, as many as it takes for "
                        "this share of the support rows to be real, or 'off' for the powers of two "
                        f"(default: {t.padded_min_real})")
    g.add_argument("--finetune-lr", type=_number(), help="the fine-tuning baseline's step size (default: chosen on "
                   "the validation users)")
    g.add_argument("--item-warmup", type=_number_or_off,
                   help="two-sided adaptation in evaluation: warm new items up from their first raters' support "
                        "ratings with this shrinkage pseudo-count, or 'off' to score them from content alone "
                        f"(default: {t.item_warmup})")
    g.add_argument("--select-every", type=NON_NEGATIVE,
                   help="score both trainings on the validation tasks every N steps and keep the step with the "
                        "lowest validation MAE; 0 keeps the last step (default: "
                        f"{t.select_every})")
    g.add_argument("--select-patience", type=NON_NEGATIVE,
                   help="with --select-every: stop a training once this many scorings in a row found no better "
                        f"step; 0 runs every step (default: {t.select_patience})")
    g.add_argument("--select-metric", choices=tuple(SELECT_METRICS),
                   help="with --select-every: keep the step with the lowest validation MAE or the highest "
                        f"validation nDCG@3 (default: {t.select_metric})")
    g.add_argument("--id-dropout", type=_number(0.0, maximum=0.99),
                   help="ID dropout for models with ID embeddings (e.g. --set model.use_ids=true): hide each "
                        "training task's user ID and each row's item ID with this probability, so new users and "
                        f"items are scored as trained (default: {t.id_dropout})")
    g.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed for data, split and initialisation (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=POSITIVE, default=CHECKPOINT_EVERY,
                   help="write a resumable checkpoint every N steps (default: %(default)s)")
    g = p.add_argument_group("run folder")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true",
                      help="--workdir holds another run: delete its run files and start fresh")
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --workdir (its config must be identical; fails if there is none)")


def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--binary", action="store_true", help="add precision/recall/F1/AUC (rating >= 4 is a like) and coverage@k")
    p.add_argument("--curves", action="store_true", help="also save adaptation curves (PNG + CSV) for user-cold tasks")
    p.add_argument("--streaming", action="store_true",
                   help="also run the streaming protocol: ratings arrive one at a time (incremental update, "
                        "re-adapt, fine-tune, no adaptation); writes <workdir>/streaming/")


class UsageError(ValueError):
    """An argument that cannot work (a missing path, a folder holding another run): exit status 2."""


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The :class:`ExperimentConfig` of parsed arguments: the dataset, learner, model and seed,
    then every typed flag that was given and every ``--set``. A setting given twice (a flag and
    ``--set``) or one the learner or model does not take is a ``ValueError`` naming it."""
    seed = args.seed
    base = ExperimentConfig(dataset=args.dataset, learner=LearnerConfig(args.learner), model=ModelConfig(args.model),
                            split=SplitConfig(seed=seed), train=TrainConfig(seed=seed))
    typed: dict[str, Any] = {}
    for dest, (key, constant) in SHORTCUTS.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        if dest == "item_shrinkage" and args.learner != "item_mean":
            raise UsageError("--item-shrinkage sets item_mean's shrinkage; use it with --learner item_mean.")
        if key in typed:
            raise UsageError(f"{key} is set twice (--{dest.replace('_', '-')} and another flag).")
        value = None if value == OFF else value
        typed[key] = constant if constant is not None else (tuple(value) if isinstance(value, list) else value)
    texts = parse_settings(args.settings)
    both = sorted(set(typed) & set(texts))
    if both:
        raise UsageError(f"{', '.join(both)} set twice: by a flag and by --set.")
    config = apply_settings(base, typed)
    return apply_settings(config, texts, from_text=True) if texts else config


OFF = "off"


def _number_or_off(text: str) -> float | str:
    """An argparse type: a finite number >= 0, or ``off`` (the setting becomes None)."""
    return OFF if text.strip().lower() == OFF else _number()(text)


def _names(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated non-empty names."""
    names = tuple(n.strip() for n in text.split(","))
    if not names or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="continue meta-training a published preset on your data")
    p.add_argument("--from", dest="preset", required=True,
                   help="preset: a registered name (see saved_models/), a folder, an https:// URL or hf://owner/repo")
    p.add_argument("--dataset", choices=DATASETS, default="synthetic", help="your data (default: %(default)s)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed for the split and the new parameters (default: %(default)s)")
    p.add_argument("--meta-steps", type=POSITIVE, default=500, help="meta-training steps on your data (default: %(default)s)")
    p.add_argument("--pretrain-steps", type=NON_NEGATIVE, default=500, help="steps of the global baseline (default: %(default)s)")
    p.add_argument("--workdir", required=True, help="output run folder (evaluate it with `tfmetarec evaluate`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the split's counts are still printed)")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1 or list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(f"expected increasing positive sizes, got {text!r}")
    return sizes


def _add_export_parser(sub) -> None:
    default = Buckets()
    p = sub.add_parser("export", help="write a trained run as a TF Serving SavedModel (and ONNX) that adapts in-graph")
    p.add_argument("--workdir", required=True, help="folder written by `tfmetarec train`")
    p.add_argument("--out", required=True, help="serving base folder: the SavedModel goes to <out>/<name>/<version>")
    p.add_argument("--name", default="tfmetarec", help="model name TF Serving serves it under (default: %(default)s)")
    p.add_argument("--version", type=POSITIVE, default=1, help="model version, a positive integer (default: %(default)s)")
    p.add_argument("--onnx", action="store_true",
                   help="also write one ONNX graph per bucket to <out>/onnx/<name>/<version>/ (needs the onnx extra)")
    p.add_argument("--quantize", action="store_true", help="with --onnx: also write int8 (dynamic) copies")
    p.add_argument("--xla", action="store_true",
                   help="XLA-compile the adaptation (faster; XLA in TF Serving is experimental, see export/README.md)")
    p.add_argument("--top-k", type=POSITIVE, default=50, help="items a `recommend` answer holds (default: %(default)s)")
    p.add_argument("--candidates", type=_count_or_auto, default=CANDIDATES,
                   help="items a two-stage `recommend` scores exactly after estimating every item's score, or "
                        "'auto': 1,500, or 0.4%% of a catalogue above 375,000 items (default: %(default)s; at "
                        "least --top-k; rated items are never among them)")
    p.add_argument("--exhaustive-up-to", type=NON_NEGATIVE, default=EXHAUSTIVE_UP_TO,
                   help="catalogues of at most this many items are scored whole, larger ones in two stages "
                        "(default: %(default)s)")
    p.add_argument("--no-static-signatures", dest="static", action="store_false",
                   help="leave out the one-user signatures at static shapes (adapt_and_score.t1.s32, ...): a "
                        "shorter export; TF Serving then runs every request through the dynamic signatures")
    p.add_argument("--user-buckets", type=_sizes, default=default.users,
                   help="padded numbers of users per request, comma-separated (default: %(default)s)")
    p.add_argument("--support-buckets", type=_sizes, default=default.support,
                   help="padded support sizes; the largest is the limit (default: %(default)s)")
    p.add_argument("--query-buckets", type=_sizes, default=default.query,
                   help="padded candidate counts; the largest is the limit (default: %(default)s)")


def _pairs(text: str, what: str, number: bool) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":" if number else "=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--{what}: expected {'ITEM:RATING' if number else 'FIELD=VALUE'} pairs separated by "
                             f"commas, got {part!r}.")
        out.append((key.strip(), value.strip()))
    return out


def parse_ratings(text: str) -> list[tuple[int, float]]:
    """``--ratings 50:5,172:4`` as ``[(50, 5.0), (172, 4.0)]``; anything else a :class:`UsageError`."""
    ratings = []
    for item, value in _pairs(text, "ratings", True):
        try:
            rating = float(value)
            ratings.append((int(item), rating))
        except ValueError:
            raise UsageError(f"--ratings: {item}:{value} is not an integer item ID and a number.") from None
        if not math.isfinite(rating):
            raise UsageError(f"--ratings: {item}:{value} is not a finite rating.")
    if not ratings:
        raise UsageError("--ratings: give at least one ITEM:RATING pair.")
    return ratings


def _add_recommend_parser(sub) -> None:
    p = sub.add_parser("recommend", help="top-k items for a new user from a few ratings, through the exported model")
    p.add_argument("--workdir", required=True, help="folder written by `tfmetarec train`")
    p.add_argument("--ratings", required=True, help="the user's ratings as ITEM:RATING pairs, e.g. 50:5,172:4,133:1")
    p.add_argument("--user", default="", help="raw user features as FIELD=VALUE pairs, e.g. gender=F,age=25")
    p.add_argument("-k", type=POSITIVE, default=10, help="how many items (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfmetarec",
        description="Meta-learning for cold-start recommendation: train, evaluate, report.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="meta-train a learner and the baselines, save them to --workdir")
    _add_experiment_args(p)
    p.add_argument("--workdir", default=None, help="output folder (default: runs/<dataset>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the split's counts are still printed)")
    p = sub.add_parser("evaluate", help="cold-start report of a trained run in --workdir")
    p.add_argument("--workdir", required=True, help="folder written by `tfmetarec train`")
    p.add_argument("--data-dir", default=None, help="override the data folder saved with the run")
    _add_report_args(p)
    p = sub.add_parser("quickstart", help="train + evaluate in one go (synthetic data by default)")
    _add_experiment_args(p)
    _add_report_args(p)
    p.add_argument("--workdir", default=None, help="output folder (default: runs/<dataset>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the split's counts are still printed)")
    _add_export_parser(sub)
    _add_recommend_parser(sub)
    _add_finetune_parser(sub)
    for command in sub.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="show TensorFlow's C++ log lines and retracing warnings (hidden by default)")
    return parser


# -- checks before TensorFlow loads ---------------------------------------------------------------
def _check_paths(args: argparse.Namespace) -> None:
    """Every path argument usable, before TensorFlow loads: :class:`UsageError` otherwise."""
    from tfmetarec.run_folder import RunFolderError, check_path

    for name in ("data_dir",):
        value = getattr(args, name, None)
        if value and not Path(value).expanduser().is_dir():
            raise UsageError(f"--{name.replace('_', '-')} {value} is not a folder.")
    for name in ("item_side_file", "item_vectors"):
        value = getattr(args, name, None)
        if value and not Path(value).expanduser().is_file():
            raise UsageError(f"--{name.replace('_', '-')} {value} is not a file.")
    split_file = getattr(args, "split_file", None)
    if split_file and not Path(split_file).expanduser().exists():
        raise UsageError(f"--split-file {split_file} does not exist.")
    if getattr(args, "fixed_tasks", False) and not split_file:
        raise UsageError("--fixed-tasks trains on a published split's tasks: give --split-file too.")
    if args.command in ("evaluate", "export", "recommend"):
        folder = Path(args.workdir).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--workdir {folder} holds no trained run: it is not a folder (run `tfmetarec train` "
                             "first).")
    try:
        if args.command in ("train", "quickstart", "finetune") and args.workdir:
            check_path(args.workdir)
        if args.command == "export":
            check_path(args.out, "--out")
    except RunFolderError as err:
        raise UsageError(str(err)) from None


def _check_data(config: ExperimentConfig) -> None:
    """A MovieLens dataset whose folder is missing is reported before TensorFlow loads."""
    if config.dataset == "synthetic" or config.data_dir:
        return
    from tfmetarec.data.paths import DATA_DIR_ENV, dataset_dir

    folder = dataset_dir(config.dataset)
    if not folder.is_dir():
        raise UsageError(f"{config.dataset}: no data folder {folder} (set --data-dir, or ${DATA_DIR_ENV} to the "
                         "folder that holds it).")


class Plan:
    """What a command will do, checked before TensorFlow loads: ``run()`` does it."""

    def __init__(self, run: Callable[[], int]):
        self.run = run


def plan(args: argparse.Namespace) -> Plan:
    """Check the arguments of ``args.command`` (paths, settings, the run folder) and return its
    work; :class:`UsageError` (or another ``ValueError``) names the first problem."""
    _check_paths(args)
    command = args.command
    if command in ("train", "quickstart"):
        config = config_from_args(args)
        _check_data(config)
        workdir = Path(args.workdir or Path("runs") / config.dataset)
        from tfmetarec.run_folder import RunFolder

        mode = "overwrite" if args.overwrite else "resume" if args.resume else "continue"
        RunFolder(workdir).check(config, mode)  # RunFolderError names what is wrong
        return Plan(lambda: _train(args, config, workdir, mode))
    if command == "evaluate":
        return Plan(lambda: _evaluate(args))
    if command == "export":
        buckets = Buckets(users=args.user_buckets, support=args.support_buckets, query=args.query_buckets)
        if args.candidates != "auto" and args.candidates < args.top_k:
            raise UsageError(f"--candidates {args.candidates} is fewer than --top-k ({args.top_k}), the items a "
                             "recommendation names.")
        return Plan(lambda: _export(args, buckets))
    if command == "recommend":
        ratings = parse_ratings(args.ratings)
        user = dict(_pairs(args.user, "user", False))
        return Plan(lambda: _recommend(args, ratings, user))
    if command == "finetune":
        return Plan(lambda: _finetune(args))
    raise UsageError(f"unknown command {command!r}")


# -- the commands: one call each ------------------------------------------------------------------------
def _print_report(evaluation, workdir: Path, args: argparse.Namespace) -> None:
    from tfmetarec.evaluation.report import to_text

    run, report, tests = evaluation.run, evaluation.report, evaluation.tests
    unit = "item" if run.prepared.config.task_key == "item" else "user"
    print(f"\nCold-start report (per-{unit} metrics averaged over {unit}s; lower MAE/RMSE is better)")
    print(to_text(report))
    if tests is not None and len(tests):
        shown = tests[["scenario", "metric", "method", "baseline", "diff", "p", "verdict"]]
        print(f"\nPaired tests over {unit}s ({run.config.learner.name} - baseline; better/worse only where p < 0.05)")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if evaluation.curves is not None:
        print(f"Adaptation curves written to {workdir / 'curves'}")
    if evaluation.streaming is not None:
        from tfmetarec.evaluation.streaming import to_markdown

        print("\nStreaming (user_cold): MAE after n ratings arrived one at a time")
        print(to_markdown(evaluation.streaming, "MAE"))
        print(f"Streaming results written to {workdir / 'streaming'}")
    print(f"\nReport written to {workdir / 'report.md'}")


def _train(args: argparse.Namespace, config: ExperimentConfig, workdir: Path, mode: str) -> int:
    from tfmetarec import workflows

    started = time.time()
    run = workflows.train(config, workdir, verbose=2 if args.quiet else 1, mode=mode,
                          checkpoint_every=args.checkpoint_every)
    print(f"\nSaved the trained run to {workdir} ({time.time() - started:.0f} s)")
    if args.command == "quickstart":
        evaluation = workflows.evaluate_folder(workdir, run=run, binary=args.binary, curves=args.curves,
                                               streaming_protocol=args.streaming)
        _print_report(evaluation, workdir, args)
        print(f"Done in {time.time() - started:.0f} s")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tfmetarec import workflows

    evaluation = workflows.evaluate_folder(args.workdir, args.data_dir, binary=args.binary, curves=args.curves,
                                           streaming_protocol=args.streaming)
    _print_report(evaluation, Path(args.workdir), args)
    return 0


def _export(args: argparse.Namespace, buckets: Buckets) -> int:
    """The `export` command: a run's learner and encoder -> SavedModel (+ ONNX files)."""
    from tfmetarec.workflows import export_run

    written = export_run(args.workdir, args.out, args.name, args.version, onnx=args.onnx, quantize=args.quantize,
                         jit_compile=args.xla, top_k=args.top_k, buckets=buckets, candidates=args.candidates,
                         exhaustive_up_to=args.exhaustive_up_to, static=args.static)
    for path in written:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        print(f"wrote {path} ({sum(f.stat().st_size for f in files) / 2**20:.2f} MB)")
    print("signatures: serving_default, adapt_and_score, recommend, adapt, score_with_state, recommend_with_state, "
          "update_state (raw IDs in; see export/README.md)"
          + (", each but the first also at static shapes for one user (adapt_and_score.t1.s<bucket>, ...)"
             if args.static and buckets.users[0] == 1 else ""))
    return 0


def _recommend(args: argparse.Namespace, ratings: list[tuple[int, float]], user: dict[str, str]) -> int:
    from tfmetarec.workflows import recommend

    table = recommend(args.workdir, ratings, user, k=args.k)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    """The `finetune` command: preset -> transfer -> meta-train on the user's data -> saved run."""
    from tfmetarec.presets import finetune, finetune_config, from_preset

    preset = from_preset(args.preset)
    config = finetune_config(preset, args.dataset, args.data_dir, args.seed, args.meta_steps, args.pretrain_steps)
    started = time.time()
    run, report = finetune(preset, config, args.workdir, verbose=0 if args.quiet else 1)
    print("Transfer from", preset.path)
    print(report.to_text())
    print(f"Saved the fine-tuned run to {args.workdir} ({time.time() - started:.0f} s); "
          f"`tfmetarec evaluate --workdir {args.workdir}` reports it.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        work = plan(args)
    except ValueError as err:  # UsageError, RunFolderError, OptionError, a setting out of range
        print(f"tfmetarec: error: {err}", file=sys.stderr)
        return 2
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    from tfmetarec._quiet import import_tensorflow

    import_tensorflow(verbose=args.verbose)
    from tfmetarec.learners.distribute import ClusterError

    try:
        return work.run()
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, ImportError, PermissionError) as err:
        print(f"tfmetarec: error: {err}", file=sys.stderr)  # PresetError, CheckpointError, DivergenceError too
        return 2
    except ClusterError as err:
        print(f"tfmetarec: error: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)  # TensorFlow's collective runtime can hold a normal exit while a peer hangs


if __name__ == "__main__":
    sys.exit(main())
