"""``tfmetarec`` command line: a thin layer over :mod:`tfmetarec.experiment`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from tfmetarec.config import DATASETS, LEARNERS, MODELS, STRATEGIES, TASK_KEYS, ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
from tfmetarec.data.splits import SplitConfig
from tfmetarec.export.contract import Buckets

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
    g.add_argument("--new-item-year", type=int, default=s.new_item_year, help="items released in or after this year are new (default: per dataset)")
    g.add_argument("--query-size", type=int, default=s.query_size, help="query ratings per task (default: %(default)s)")
    g.add_argument("--min-support", type=int, default=s.min_support, help="least support ratings of an evaluation task (default: %(default)s)")
    g.add_argument("--task-key", choices=TASK_KEYS, default=d.task_key, help="one task per user (user cold start) or per item (item cold start: pair with an item-side --adapt such as cf's item_prior) (default: %(default)s)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=m.name, help="rating model (default: %(default)s)")
    g.add_argument("--embedding-dim", type=int, default=m.embedding_dim, help="feature embedding size (default: %(default)s)")
    g.add_argument("--hidden-units", type=int, nargs="+", default=list(m.hidden_units), help="decision layer widths (default: %(default)s)")
    g = p.add_argument_group("meta-learner")
    g.add_argument("--learner", choices=LEARNERS, default=lrn.name, help="meta-learner (default: %(default)s)")
    g.add_argument("--inner-steps", type=int, default=lrn.inner_steps, help="adaptation steps per task (default: %(default)s)")
    g.add_argument("--inner-lr", type=float, default=lrn.inner_lr, help="adaptation learning rate (default: %(default)s)")
    g.add_argument("--first-order", action="store_true", help="first-order MAML (no second-order terms)")
    g.add_argument("--adapt", default=lrn.adapt, help="the model's parameter group that adapts: all, decision, head, or a model's own (cf: user, item_prior) (default: %(default)s)")
    g.add_argument("--learn-inner-lr", choices=("fixed", "per_parameter", "per_layer_step"), default=lrn.learn_inner_lr,
                   help="maml: learned inner rates, per parameter (Meta-SGD) or per layer and step (MAML++) (default: %(default)s)")
    g.add_argument("--multi-step-loss", action="store_true", help="maml: MAML++ multi-step query loss")
    g.add_argument("--msl-anneal-steps", type=int, default=lrn.msl_anneal_steps, help="maml: outer steps to anneal the multi-step loss onto the last step, 0 = fixed (default: %(default)s)")
    g.add_argument("--support-only", action="store_true", help="reptile: inner steps on the support only (default: support and query rows)")
    g.add_argument("--hidden-dim", type=int, default=lrn.hidden_dim, help="prototype, matching, task_encoder: projection width (default: %(default)s)")
    g.add_argument("--pooling", choices=("mean", "attention"), default=lrn.pooling, help="task_encoder: set pooling (default: %(default)s)")
    g.add_argument("--shrinkage", type=float, default=lrn.shrinkage, help="prototype, matching, task_encoder: initial support pseudo-count (default: %(default)s)")
    g.add_argument("--item-shrinkage", type=float, default=lrn.item_shrinkage, help="item_mean: pseudo-count toward the global mean (default: %(default)s)")
    g = p.add_argument_group("training")
    g.add_argument("--meta-steps", type=int, default=t.meta_steps, help="meta-training steps (default: %(default)s)")
    g.add_argument("--pretrain-steps", type=int, default=t.pretrain_steps, help="steps of the global baseline (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=t.batch_size, help="tasks per step (default: %(default)s)")
    g.add_argument("--outer-lr", type=float, default=t.outer_lr, help="outer (Adam) learning rate (default: %(default)s)")
    g.add_argument("--no-xla", action="store_true", help="run without XLA compilation")
    g.add_argument("--steps-per-execution", type=int, default=t.steps_per_execution,
                   help="meta-steps per compiled call: more cuts the fixed per-step cost (default: %(default)s)")
    g.add_argument("--strategy", choices=STRATEGIES, default=t.strategy,
                   help="distribute training: mirrored = the local GPUs; multi_worker = the processes named in "
                        "TF_CONFIG (run the same command on every worker); --batch-size is the global batch "
                        "(default: %(default)s)")
    g.add_argument("--seed", type=int, default=t.seed, help="seed for data, split and initialisation (default: %(default)s)")


def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--binary", action="store_true", help="add precision/recall/F1/AUC (rating >= 4 is a like) and coverage@k")
    p.add_argument("--curves", action="store_true", help="also save adaptation curves (PNG + CSV) for user-cold tasks")


def _report(run, workdir: Path, args: argparse.Namespace) -> None:
    from tfmetarec import experiment

    report = experiment.evaluate(run, workdir, binary=args.binary)
    unit = "item" if run.prepared.config.task_key == "item" else "user"
    print(f"\nCold-start report (per-{unit} metrics averaged over {unit}s; lower MAE/RMSE is better)")
    print(experiment.to_text(report))
    if args.curves:
        experiment.adaptation_curves(run, workdir / "curves")
        print(f"Adaptation curves written to {workdir / 'curves'}")
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
    return parser


def _add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="continue meta-training a published preset on your data")
    p.add_argument("--from", dest="preset", required=True,
                   help="preset: a registered name (see saved_models/), a folder, an https:// URL or hf://owner/repo")
    p.add_argument("--dataset", choices=DATASETS, default="synthetic", help="your data (default: %(default)s)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the new parameters (default: %(default)s)")
    p.add_argument("--meta-steps", type=int, default=500, help="meta-training steps on your data (default: %(default)s)")
    p.add_argument("--pretrain-steps", type=int, default=500, help="steps of the global baseline (default: %(default)s)")
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
    p.add_argument("--version", type=int, default=1, help="model version, a positive integer (default: %(default)s)")
    p.add_argument("--onnx", action="store_true",
                   help="also write one ONNX graph per bucket to <out>/onnx/<name>/<version>/ (needs the onnx extra)")
    p.add_argument("--quantize", action="store_true", help="with --onnx: also write int8 (dynamic) copies")
    p.add_argument("--xla", action="store_true",
                   help="XLA-compile the adaptation (faster; XLA in TF Serving is experimental, see export/README.md)")
    p.add_argument("--top-k", type=int, default=50, help="items a `recommend` answer holds (default: %(default)s)")
    b = Buckets()
    p.add_argument("--user-buckets", type=_sizes, default=b.users,
                   help="padded numbers of users per request, comma-separated (default: %(default)s)")
    p.add_argument("--support-buckets", type=_sizes, default=b.support,
                   help="padded support sizes; the largest is the limit (default: %(default)s)")
    p.add_argument("--query-buckets", type=_sizes, default=b.query,
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
    p.add_argument("-k", type=int, default=10, help="how many items (default: %(default)s)")


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from tfmetarec import experiment  # deferred: TensorFlow loads only for real work
    from tfmetarec.learners.distribute import ClusterError

    tf.get_logger().setLevel("ERROR")  # one retrace per support-size bucket is expected

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
        config = config_from_args(args)
        workdir = Path(args.workdir or Path("runs") / config.dataset)
        started = time.time()
        run = experiment.train(config, workdir, verbose=0 if args.quiet else 1)
        print(f"\nSaved the trained run to {workdir} ({time.time() - started:.0f} s)")
        if args.command == "quickstart":
            _report(run, workdir, args)
            print(f"Done in {time.time() - started:.0f} s")
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, ImportError) as err:  # PresetError too
        print(f"tfmetarec: error: {err}", file=sys.stderr)
        return 2
    except ClusterError as err:
        print(f"tfmetarec: error: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)  # TensorFlow's collective runtime can hold a normal exit while a peer hangs


if __name__ == "__main__":
    sys.exit(main())
