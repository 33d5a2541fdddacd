"""MeLU's cold-start protocol (Lee et al., KDD 2019) from MeLU's published files, with one command.

    PYTHONPATH=. python benchmarks/melu_protocol.py --data-dir ~/ml-1m --melu-dir ~/MeLU/movielens/ml-1m \
        --workdir runs/melu-protocol [-- any other tfmetarec train flag, e.g. --meta-steps 3000]

``--data-dir`` holds MovieLens 1M (``ratings.dat``, ``users.dat``, ``movies.dat``); ``--melu-dir``
holds MeLU's ``warm_state.json``, ``user_cold_state.json``, ``item_cold_state.json``,
``user_and_item_cold_state.json`` with their ``*_y.json`` and ``movies_extrainfos.dat``
(``--states`` and ``--item-file`` name them separately). None of these files is in this repository.

What the protocol fixes, and the ``tfmetarec quickstart`` flag that sets each (the script prints
the whole command, so it can be re-run or changed without this script):

* the split: MeLU's four state files (``--split-file``); users with 13-100 ratings, each user's
  items shuffled once and the last 10 the query; meta-training on those fixed support/query
  tasks (``--fixed-tasks``; ``--draw-queries`` draws a new query at every step instead);
* no validation users held out (``--validation-fraction 0``), so the fine-tuning baseline's
  step size is given (``--finetune-lr``, default 0.01 here); no items held out and no checkpoint
  chosen (``--validation-item-fraction 0 --select-every 0``): every method trains its full steps;
* MeLU's eight fields: gender, age, occupation, the first 5 characters of the zip code
  (``--zip-prefix-len 5``), and the item's MPAA rate, IMDb genres, directors and actors from
  ``movies_extrainfos.dat`` (``--item-side-file`` with ``--list-columns genres,director,actors
  --list-separator ", "``; its genres replace MovieLens' own; ``--keep-fields`` drops the release
  year, which MeLU does not embed);
* MeLU's sizes: 32-dim embeddings, decision layers 64-64 (the library's MeLU defaults).

The learner and its settings stay the library's (MAML, 5 inner steps); add MeLU's own after
``--`` (``-- --inner-steps 1 --inner-lr 5e-6 --outer-lr 5e-5``) to compare.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

KEEP_FIELDS = ("gender", "age", "occupation", "zip", "rate", "genres", "director", "actors")


def protocol_arguments(args: argparse.Namespace, side_file: Path) -> list[str]:
    """The ``tfmetarec quickstart`` arguments of MeLU's protocol."""
    argv = ["quickstart", "--dataset", "movielens-1m", "--data-dir", str(args.data_dir),
            "--split-file", str(args.states or args.melu_dir), "--item-side-file", str(side_file),
            "--list-columns", "genres,director,actors", "--list-separator", ", ",
            "--keep-fields", ",".join(KEEP_FIELDS), "--zip-prefix-len", "5",
            "--validation-fraction", "0", "--validation-item-fraction", "0", "--select-every", "0",
            "--finetune-lr", str(args.finetune_lr),
            "--seed", str(args.seed), "--workdir", str(args.workdir)]
    if not args.draw_queries:
        argv.append("--fixed-tasks")
    return argv + list(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Flags after -- go to tfmetarec.")
    p.add_argument("--data-dir", type=Path, required=True, help="MovieLens 1M folder")
    p.add_argument("--melu-dir", type=Path, help="folder with MeLU's state JSONs and movies_extrainfos.dat")
    p.add_argument("--states", type=Path, help="MeLU's state files, when not in --melu-dir")
    p.add_argument("--item-file", type=Path, help="MeLU's movies_extrainfos.dat, when not in --melu-dir")
    p.add_argument("--workdir", type=Path, default=Path("runs/melu-protocol"), help="run folder (default: %(default)s)")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="fine-tuning baseline's step size (default: %(default)s)")
    p.add_argument("--draw-queries", action="store_true",
                   help="meta-train on a new random query per user and step, not MeLU's fixed tasks")
    p.add_argument("--seed", type=int, default=0, help="shuffles each user's items (default: %(default)s)")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.rest = rest
    if args.melu_dir is None and (args.states is None or args.item_file is None):
        print("error: give --melu-dir, or both --states and --item-file", file=sys.stderr)
        return 2
    item_file = args.item_file or args.melu_dir / "movies_extrainfos.dat"
    from tfmetarec.cli import main as tfmetarec
    from tfmetarec.data.published import melu_item_side_file

    side_file = melu_item_side_file(item_file, args.workdir / "melu_items.tsv")
    command = protocol_arguments(args, side_file)
    print("tfmetarec " + " ".join(shlex.quote(a) for a in command), flush=True)
    return tfmetarec(command)


if __name__ == "__main__":
    sys.exit(main())
