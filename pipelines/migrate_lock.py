"""``blurdm-bench migrate-lock``: carry a finished study over to Table 1's training-set dimension (issue 15)
without retraining.

The command plans the migration (:func:`pipelines.results.lock_migration.plan_migration`: what is renamed,
rewritten, moved and accepted, and why: see there), says it, and applies it unless ``--dry-run``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.core.config import repo_root
from pipelines.results.lock_migration import (
    NOT_ACCEPTED,
    Plan,
    accept_code_changes,
    apply,
    load_target,
    plan_migration,
    read_lock,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-set", default=None,
                        help="the training set the old study becomes (default: the first of params train_sets)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    parser.add_argument("--no-accept", dest="accept", action="store_false",
                        help="do not record the hashes of this commit's code for the migrated stages (step 3)")


def _say(plan: Plan, root: Path) -> None:
    for old, new in plan.renamed.items():
        print(f"rename  {old} -> {new}")
    for name in plan.rewritten:
        print(f"rewrite {name} (paths / params of the new layout)")
    for src, dst in plan.moves:
        print(f"move    {src.relative_to(root)} -> {dst.relative_to(root)}")
    for note in plan.notes:
        print(f"note    {note}")


def run(args) -> int:
    root = repo_root()
    lock = read_lock(root / "dvc.lock")  # first: a corrupt lock is our one-line error, not DVC's traceback
    target = load_target(root, args.train_set)
    plan = plan_migration(target, lock)
    _say(plan, root)
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    if not plan.empty:
        apply(plan, root)
    if args.accept:
        stages = [name for name in plan.lock["stages"] if name not in NOT_ACCEPTED and name in target.stages]
        accepted, notes = accept_code_changes(root, stages, plan.lock, target.raw)
        for name in accepted:
            print(f"accept  {name}: only this commit's code / unread profile keys differ (recorded, as dvc commit -f)")
        for note in notes:
            print(f"note    {note}")
    print("done: `dvc status` shows what is left to rerun" if not plan.empty or args.accept else "nothing to migrate")
    return 0
