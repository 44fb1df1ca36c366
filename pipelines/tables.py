"""``blurdm-bench tables``: gather the evaluations of the study into the metric tables (``metrics/*.json``).

The command reads the params the tables stage declares (:data:`PARAMS_KEYS`) and calls
:func:`pipelines.results.gain_tables.build_tables` (what each table holds: see there); the tables are checked
against their schemas (:mod:`pipelines.results.metric_schemas`) before they are written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.core.config import load_params, repo_root
from pipelines.core.errors import MissingFileError
from pipelines.core.layout import eval_root
from pipelines.core.params_view import restrict
from pipelines.results.gain_tables import build_tables


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (default metrics/)")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", default=None)


# what this stage reads (dvc.yaml declares them)
PARAMS_KEYS = ("profile", "train_sets", "data.max_pixels", "evaluate.bootstrap", "evaluate.eval_seeds", "ablations",
               "controls",
               "prior.T", "models.ablation_backbone", "models.backbones", "models.scale", "train.seeds",
               "backbone_train")


def run(args) -> int:
    params = restrict(load_params(args.params, profile=args.profile), PARAMS_KEYS, "the tables stage")
    if not eval_root().is_dir():
        raise MissingFileError(f"{eval_root()}: no evaluations yet (run the evaluate stages first)")
    out = Path(args.out) if args.out else repo_root() / "metrics"
    tables = build_tables(params, out)
    for name, table in tables.items():
        if name == "controls":
            passed = {k: f"{v['passed']}/{v['total']}" for k, v in table["summary"].items()}
            print(f"controls: passed {passed}" + (" (a pipeline check)" if table["pipeline_check"] else "")
                  + f" -> {out / 'controls.json'}")
        else:
            print(f"{name}: {len(table['rows'])} row(s) -> {out / (name + '.json')}")
    return 0
