"""Keep the last step, or choose the checkpoint on validation tasks with new items? 3 seeds, paired.

    PYTHONPATH=. python benchmarks/checkpoint_choice.py                 # synthetic + MovieLens 100K, seeds 0-2
    PYTHONPATH=. python benchmarks/checkpoint_choice.py --datasets synthetic --seeds 0 --steps 200   # smoke

Runs :func:`new_items.run_group` (no retrained levers) twice per (dataset, seed), each group in a
fresh process: once as the library ran before checkpoint choice (``train.select_every=0``,
``split.validation_item_fraction=0``: both trainings keep their last step, every existing item
trains) and once with the defaults (a tenth of the existing items held out as pseudo-new items;
every 100 steps both trainings scored on the validation users and on the pseudo-new items' tasks,
the step with the lowest mean validation MAE kept). The scenario tasks are the same in both runs
(same split seed), so every method is compared with itself task by task: paired sign-flip tests
over the tasks of each seed. Writes ``benchmarks/results/checkpoint_choice/``: ``last/`` and
``chosen/`` (each run's ``per_task.csv.gz`` and ``new_items.md``, the latter's tests against
``maml+warm`` as in ``new_items.py``), ``paired.csv`` and ``checkpoint_choice.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


LAST = ("train.select_every=0", "split.validation_item_fraction=0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, run_groups
    from levers import page, paired
    from new_items import run_group, summarise

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    add_group_arguments(parser, "benchmarks/results/checkpoint_choice")
    args = parser.parse_args(argv)
    started = time.time()
    out = Path(args.out)
    frames = {}
    for name, settings in (("last", LAST), ("chosen", ())):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        frames[name] = run_groups(run_group, [(d, s) for d in args.datasets for s in args.seeds], args.steps, False,
                                  settings, saved=folder / "per_task.csv.gz", resume=args.resume)
        (folder / "new_items.md").write_text(summarise(frames[name])[2] + "\n", encoding="utf-8")
    table = paired(frames["last"], frames["chosen"])
    table.to_csv(out / "paired.csv", index=False)
    text = page(table, "Checkpoint choice against the last step", "last step", "chosen")
    (out / "checkpoint_choice.md").write_text(text + f"\nTotal time {time.time() - started:.0f} s.\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
