"""``tfmetarec`` command line: a thin layer over :mod:`tfmetarec.experiment`.

Arguments, numbers and paths are checked before TensorFlow is imported, so a mistake is
reported (exit status 2) at once; TensorFlow then loads quietly unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

from tfmetarec.config import (
    DATASETS,
    LEARNERS,
    MODELS,
    QUERY_LOSSES,
    STRATEGIES,
    TASK_KEYS,
    ExperimentConfig,
    LearnerConfig,
    ModelConfig,
    TrainConfig,
)
from tfmetarec.data.split_config import SplitConfig

BUCKETS = {"users": (1, 8, 32), "support": (8, 32, 128, 512), "query": (16, 128, 1024)}
"""``tfmetarec.export.contract.Buckets()``'s defaults, repeated here so that building the parser does not
import TensorFlow (tests/test_cli.py keeps the two equal)."""
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

EXAMPLES = """examples:
  tfmetarec quickstart                                  # synthetic data, train + evaluate
  tfmetarec quickstart --dataset movielens-100k         # the real 100K set (see TFMETAREC_DATA_DIR)
  tfmetarec quickstart --model cf --task-key item --adapt item_prior   # new items adapt from their first ratings
  tfmetarec train --dataset movielens-1m --data-dir ~/ml-1m --workdir runs/ml1m
  tfmetarec train --strategy mirrored --batch-size 64 --workdir runs/gpus   # every local GPU
  tfmetarec evaluate --workdir runs/ml1m
  tfmetarec export --workdir runs/ml1m --out serving --onnx   # TF Serving SavedModel + ONNX
  tfmetarec recommend --workdir runs/ml1m --ratings 50:5,172:4,133:1 --user gender=F,age=25 -k 10
  tfmetarec finetune --from melu-maml-ml100k --dataset movielens-1m --data-dir ~/ml-1m --workdir runs/ft
"""


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    d, s, m, lrn, t = ExperimentConfig(), SplitConfig(), ModelConfig(), LearnerConfig(), TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="which data to use (default: %(default)s)")
    g.add_argument("--data-dir", help="folder holding the dataset's files (default: $TFMETAREC_DATA_DIR/movielens-100k, movielens-1m or ml-latest-small)")
    g.add_argument("--item-side-file", help="MovieLens only: CSV/TSV of item content keyed by item ID (rate, directors, actors ...; '|' separates a list's values)")
    g.add_argument("--split", choices=("melu", "time"), default=s.method, help="cold-start split protocol (default: %(default)s)")
    g.add_argument("--split-file", help="use a published split instead of drawing one: a CSV/TSV with columns "
                   "user,item,rating,partition,role, or a folder (or one file) of MeLU's <state>.json / <state>_y.json")
    g.add_argument("--new-item-year", type=int, default=s.new_item_year, help="items released in or after this year are new (default: per dataset)")
    g.add_argument("--query-size", type=POSITIVE, default=s.query_size, help="query ratings per task (default: %(default)s)")
    g.add_argument("--min-support", type=POSITIVE, default=s.min_support, help="least support ratings of an evaluation task (default: %(default)s)")
    g.add_argument("--task-key", choices=TASK_KEYS, default=d.task_key, help="one task per user (user cold start) or per item (item cold start: pair with an item-side --adapt such as cf's item_prior) (default: %(default)s)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=m.name, help="rating model (default: %(default)s)")
    g.add_argument("--embedding-dim", type=POSITIVE, default=m.embedding_dim, help="feature embedding size (default: %(default)s)")
    g.add_argument("--hidden-units", type=POSITIVE, nargs="+", default=list(m.hidden_units), help="decision layer widths (default: %(default)s)")
    g = p.add_argument_group("meta-learner")
    g.add_argument("--learner", choices=LEARNERS, default=lrn.name, help="meta-learner (default: %(default)s)")
    g.add_argument("--inner-steps", type=POSITIVE, default=lrn.inner_steps, help="adaptation steps per task (default: %(default)s)")
    g.add_argument("--inner-lr", type=_number(0.0, strict=True), default=lrn.inner_lr, help="adaptation learning rate (default: %(default)s)")
    g.add_argument("--first-order", action="store_true", help="first-order MAML (no second-order terms)")
    g.add_argument("--adapt", default=lrn.adapt, help="the model's parameter group that adapts: all, decision, head, or a model's own (cf: user, item_prior) (default: %(default)s)")
    g.add_argument("--learn-inner-lr", choices=("fixed", "per_parameter", "per_layer_step"), default=lrn.learn_inner_lr,
                   help="maml: learned inner rates, per parameter (Meta-SGD) or per layer and step (MAML++) (default: %(default)s)")
    g.add_argument("--multi-step-loss", action="store_true", help="maml: MAML++ multi-step query loss")
    g.add_argument("--msl-anneal-steps", type=NON_NEGATIVE, default=lrn.msl_anneal_steps, help="maml: outer steps to anneal the multi-step loss onto the last step, 0 = fixed (default: %(default)s)")
    g.add_argument("--support-only", action="store_true", help="reptile: inner steps on the support only (default: support and query rows)")
    g.add_argument("--hidden-dim", type=POSITIVE, default=lrn.hidden_dim, help="prototype, matching, task_encoder: projection width (default: %(default)s)")
    g.add_argument("--pooling", choices=("mean", "attention"), default=lrn.pooling, help="task_encoder: set pooling (default: %(default)s)")
    g.add_argument("--shrinkage", type=_number(), default=lrn.shrinkage, help="prototype, matching, task_encoder: initial support pseudo-count (default: %(default)s)")
    g.add_argument("--item-shrinkage", type=_number(), default=lrn.item_shrinkage, help="item_mean: pseudo-count toward the global mean (default: %(default)s)")
    g.add_argument("--ranking-weight", type=_number(0.0, maximum=1.0), default=lrn.ranking_weight,
                   help="share of the query loss given to a ranking loss: (1-w)*MSE + w*ranking (default: %(default)s)")
    g.add_argument("--ranking-loss", choices=QUERY_LOSSES, default=lrn.ranking_loss,
                   help="the ranking loss --ranking-weight mixes in (default: %(default)s)")
    g = p.add_argument_group("training")
    g.add_argument("--meta-steps", type=POSITIVE, default=t.meta_steps, help="meta-training steps (default: %(default)s)")
    g.add_argument("--pretrain-steps", type=NON_NEGATIVE, default=t.pretrain_steps, help="steps of the global baseline (default: %(default)s)")
    g.add_argument("--batch-size", type=POSITIVE, default=t.batch_size, help="tasks per step (default: %(default)s)")
    g.add_argument("--outer-lr", type=_number(0.0, strict=True), default=t.outer_lr, help="outer (Adam) learning rate (default: %(default)s)")
    g.add_argument("--no-xla", action="store_true", help="run without XLA compilation")
    g.add_argument("--steps-per-execution", type=POSITIVE, default=t.steps_per_execution,
                   help="meta-steps per compiled call: more cuts the fixed per-step cost (default: %(default)s)")
    g.add_argument("--strategy", choices=STRATEGIES, default=t.strategy,
                   help="distribute training: mirrored = the local GPUs; multi_worker = the processes named in "
                        "TF_CONFIG (run the same command on every worker); --batch-size is the global batch "
                        "(default: %(default)s)")
    g.add_argument("--fixed-tasks", action="store_true",
                   help="with --split-file: meta-train on its given support/query tasks instead of drawing queries")
    g.add_argument("--seed", type=NON_NEGATIVE, default=t.seed, help="seed for data, split and initialisation (default: %(default)s)")
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


def _report(run, workdir: Path, args: argparse.Namespace) -> None:
    from tfmetarec import experiment

    report = experiment.evaluate(run, workdir, binary=args.binary)
    unit = "item" if run.prepared.config.task_key == "item" else "user"
    print(f"\nCold-start report (per-{unit} metrics averaged over {unit}s; lower MAE/RMSE is better)")
    print(experiment.to_text(report))
    tests = report.attrs.get("paired_tests")
    if tests is not None and len(tests):
        shown = tests[["scenario", "metric", "method", "baseline", "diff", "p", "verdict"]]
        print(f"\nPaired tests over {unit}s ({run.config.learner.name} - baseline; better/worse only where p < 0.05)")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.curves:
        experiment.adaptation_curves(run, workdir / "curves")
        print(f"Adaptation curves written to {workdir / 'curves'}")
    if args.streaming:
        from tfmetarec.evaluation.streaming import to_markdown

        curve = experiment.streaming(run, workdir)
        print("\nStreaming (user_cold): MAE after n ratings arrived one at a time")
        print(to_markdown(curve, "MAE"))
        print(f"Streaming results written to {workdir / 'streaming'}")
    print(f"\nReport written to {workdir / 'report.md'}")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from parsed arguments."""
    return ExperimentConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        item_side_file=args.item_side_file,
        split=dataclasses.replace(
            SplitConfig(),
            method=args.split,
            new_item_year=args.new_item_year,
            query_size=args.query_size,
            min_support=args.min_support,
            seed=args.seed,
        ),
        split_file=args.split_file,
        model=ModelConfig(name=args.model, embedding_dim=args.embedding_dim, hidden_units=tuple(args.hidden_units)),
        learner=LearnerConfig(
            name=args.learner,
            inner_steps=args.inner_steps,
            inner_lr=args.inner_lr,
            first_order=args.first_order,
            adapt=args.adapt,
            learn_inner_lr=args.learn_inner_lr,
            multi_step_loss=args.multi_step_loss,
            msl_anneal_steps=args.msl_anneal_steps,
            train_on_query=not args.support_only,
            hidden_dim=args.hidden_dim,
            pooling=args.pooling,
            shrinkage=args.shrinkage,
            item_shrinkage=args.item_shrinkage,
            ranking_weight=args.ranking_weight,
            ranking_loss=args.ranking_loss,
        ),
        train=dataclasses.replace(
            TrainConfig(),
            meta_steps=args.meta_steps,
            pretrain_steps=args.pretrain_steps,
            batch_size=args.batch_size,
            outer_lr=args.outer_lr,
            jit_compile=not args.no_xla,
            seed=args.seed,
            steps_per_execution=args.steps_per_execution,
            fixed_tasks=args.fixed_tasks,
            strategy=args.strategy,
        ),
        task_key=args.task_key,
    )


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
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = sub.add_parser("evaluate", help="cold-start report of a trained run in --workdir")
    p.add_argument("--workdir", required=True, help="folder written by `tfmetarec train`")
    p.add_argument("--data-dir", default=None, help="override the data folder saved with the run")
    _add_report_args(p)
    p = sub.add_parser("quickstart", help="train + evaluate in one go (synthetic data by default)")
    _add_experiment_args(p)
    _add_report_args(p)
    p.add_argument("--workdir", default=None, help="output folder (default: runs/<dataset>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_export_parser(sub)
    _add_recommend_parser(sub)
    _add_finetune_parser(sub)
    for command in sub.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="show TensorFlow's C++ log lines and retracing warnings (hidden by default)")
    return parser


class UsageError(ValueError):
    """An argument that cannot work (a missing path, a folder holding another run): exit status 2."""


def _check_paths(args: argparse.Namespace) -> None:
    """Every path argument usable, before TensorFlow loads: :class:`UsageError` otherwise."""
    from tfmetarec.run_folder import RunFolderError, check_path

    for name in ("data_dir",):
        value = getattr(args, name, None)
        if value and not Path(value).expanduser().is_dir():
            raise UsageError(f"--{name.replace('_', '-')} {value} is not a folder.")
    for name in ("item_side_file",):
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
            check_path(args.out)
    except RunFolderError as err:
        raise UsageError(str(err).replace("--workdir", "--out") if args.command == "export" else str(err)) from None


def _check_run_folder(args: argparse.Namespace, config: ExperimentConfig, workdir: Path) -> str:
    """``train``'s mode for ``workdir`` (continue, resume, overwrite), checked against the folder's run."""
    from tfmetarec.run_folder import check_run_folder

    mode = "overwrite" if args.overwrite else "resume" if args.resume else "continue"
    check_run_folder(workdir, config, mode)  # RunFolderError (a ValueError) names what is wrong
    return mode


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
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _finetune(args: argparse.Namespace) -> int:
    """The `finetune` command: preset -> transfer -> meta-train on the user's data -> saved run."""
    from tfmetarec.presets import finetune, from_preset

    preset = from_preset(args.preset)
    base = preset.config
    config = dataclasses.replace(
        base, dataset=args.dataset, data_dir=args.data_dir,
        split=dataclasses.replace(base.split, seed=args.seed, new_item_year=None),
        train=dataclasses.replace(base.train, meta_steps=args.meta_steps, pretrain_steps=args.pretrain_steps,
                                  seed=args.seed),
    )
    started = time.time()
    run, report = finetune(preset, config, args.workdir, verbose=0 if args.quiet else 1)
    print("Transfer from", preset.path)
    print(report.to_text())
    print(f"Saved the fine-tuned run to {args.workdir} ({time.time() - started:.0f} s); "
          f"`tfmetarec evaluate --workdir {args.workdir}` reports it.")
    return 0


def _add_export_parser(sub) -> None:
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
    p.add_argument("--user-buckets", type=_sizes, default=BUCKETS["users"],
                   help="padded numbers of users per request, comma-separated (default: %(default)s)")
    p.add_argument("--support-buckets", type=_sizes, default=BUCKETS["support"],
                   help="padded support sizes; the largest is the limit (default: %(default)s)")
    p.add_argument("--query-buckets", type=_sizes, default=BUCKETS["query"],
                   help="padded candidate counts; the largest is the limit (default: %(default)s)")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1 or list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(f"expected increasing positive sizes, got {text!r}")
    return sizes


def _export(args: argparse.Namespace) -> int:
    """The `export` command: a run's learner and encoder -> SavedModel (+ ONNX files)."""
    from tfmetarec.serving import export_run

    from tfmetarec.export.contract import Buckets

    buckets = Buckets(users=args.user_buckets, support=args.support_buckets, query=args.query_buckets)
    written = export_run(args.workdir, args.out, args.name, args.version, onnx=args.onnx, quantize=args.quantize,
                         jit_compile=args.xla, top_k=args.top_k, buckets=buckets)
    for path in written:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        print(f"wrote {path} ({sum(f.stat().st_size for f in files) / 2**20:.2f} MB)")
    print("signatures: serving_default, adapt_and_score, recommend, adapt, score_with_state, recommend_with_state "
          "(raw IDs in; see export/README.md)")
    return 0


def _pairs(text: str, what: str, number: bool) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":" if number else "=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--{what}: expected {'ITEM:RATING' if number else 'FIELD=VALUE'} pairs separated by "
                             f"commas, got {part!r}.")
        out.append((key.strip(), value.strip()))
    return out


def _add_recommend_parser(sub) -> None:
    p = sub.add_parser("recommend", help="top-k items for a new user from a few ratings, through the exported model")
    p.add_argument("--workdir", required=True, help="folder written by `tfmetarec train`")
    p.add_argument("--ratings", required=True, help="the user's ratings as ITEM:RATING pairs, e.g. 50:5,172:4,133:1")
    p.add_argument("--user", default="", help="raw user features as FIELD=VALUE pairs, e.g. gender=F,age=25")
    p.add_argument("-k", type=POSITIVE, default=10, help="how many items (default: %(default)s)")


def _recommend(args: argparse.Namespace) -> int:
    from tfmetarec.serving import recommend

    ratings = []
    for item, value in _pairs(args.ratings, "ratings", True):
        try:
            ratings.append((int(item), float(value)))
        except ValueError:
            raise ValueError(f"--ratings: {item}:{value} is not an integer item ID and a number.") from None
    user = dict(_pairs(args.user, "user", False))
    table = recommend(args.workdir, ratings, user, k=args.k)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = "continue"
    try:
        _check_paths(args)
        if args.command in ("train", "quickstart"):
            config = config_from_args(args)
            workdir = Path(args.workdir or Path("runs") / config.dataset)
            mode = _check_run_folder(args, config, workdir)
    except ValueError as err:  # UsageError, RunFolderError, a setting out of range
        print(f"tfmetarec: error: {err}", file=sys.stderr)
        return 2
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    from tfmetarec._quiet import import_tensorflow

    import_tensorflow(verbose=args.verbose)
    from tfmetarec import experiment  # deferred: TensorFlow loads only for real work
    from tfmetarec.learners.distribute import ClusterError

    try:
        if args.command == "export":
            return _export(args)
        if args.command == "recommend":
            return _recommend(args)
        if args.command == "finetune":
            return _finetune(args)
        if args.command == "evaluate":
            run = experiment.load_run(args.workdir)
            if args.data_dir:
                config = dataclasses.replace(run.config, data_dir=args.data_dir)
                run = experiment.Run(config, experiment.prepare(config), run.learner, run.baseline)
            _report(run, Path(args.workdir), args)
            return 0
        started = time.time()
        run = experiment.train(config, workdir, verbose=0 if args.quiet else 1, mode=mode,
                               checkpoint_every=args.checkpoint_every)
        print(f"\nSaved the trained run to {workdir} ({time.time() - started:.0f} s)")
        if args.command == "quickstart":
            _report(run, workdir, args)
            print(f"Done in {time.time() - started:.0f} s")
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, ImportError) as err:  # PresetError too
        print(f"tfmetarec: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        print(f"tfmetarec: error: {err}", file=sys.stderr)
        return 2
    except ClusterError as err:
        print(f"tfmetarec: error: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)  # TensorFlow's collective runtime can hold a normal exit while a peer hangs


if __name__ == "__main__":
    sys.exit(main())
