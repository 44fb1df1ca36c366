"""``blurdm-bench study``: run one DVC stage of the study (all training seeds of the active profile).

Each DVC training or evaluation stage runs one ``study`` action in one process::

    study train  --study table1 --train-set S --backbone B --stage {stage1,stage2,stage3,baseline}
    study train  --study ablation-prior  --prior {ddpm,rddm}           # stage2 + stage3 on models.ablation_backbone
    study train  --study ablation-stages --variant {s3_only,s1_s2,s1_s3}
    study train  --study t-sweep --T N                                  # stage2 + stage3 with T = N
    study train  --study ablation-base                                  # the ablation backbone's base runs (paper)
    study evaluate --study table1 --train-set S --backbone B            # baseline and +BlurDM on S's test sets
    study evaluate --study ablations                                    # oracle, priors, stage variants, T sweep

The command reads the params, gives the action only the keys its stage declares in dvc.yaml
(:func:`stage_params_keys`) and calls :func:`pipelines.training.study_training.train_action` or
:func:`pipelines.evaluation.study_evaluation.evaluate_action`. Where the runs and evaluations land:
:mod:`pipelines.core.layout`.
"""
from __future__ import annotations

import argparse

from models.names import STUDIES
from pipelines.core.config import BACKBONE_NAMES, STAGE_NAMES, load_params
from pipelines.core.errors import InvalidInputError
from pipelines.core.params_view import restrict


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("train", "evaluate"))
    parser.add_argument("--study", required=True, choices=(*STUDIES, "ablation-base", "ablations"))
    parser.add_argument("--train-set", default=None, help="table1: a training set of params train_sets")
    parser.add_argument("--backbone", default=None, choices=BACKBONE_NAMES)
    parser.add_argument("--stage", default=None, choices=STAGE_NAMES)
    parser.add_argument("--prior", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--T", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None,
                        help="train: this training seed only (default: every seed of the profile; on 2+ cores the "
                             "stage runs each seed in its own process with this flag)")
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's)")
    parser.add_argument("--params", default=None, help="params file (default: the repo's params.yaml)")
    parser.add_argument("--dvc-stage", default=None, help="DVC stage name for MLflow tags (default $DVC_STAGE)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def stage_params_keys(params, args) -> tuple[str, ...]:
    """The params keys a ``study`` action reads (its DVC stage declares them): training keys of the
    backbone and training set it trains (:func:`pipelines.training.fingerprint.train_params_keys`) or the
    evaluation keys (the test list of that training set and the test folders)."""
    table1 = args.study == "table1"
    backbone = args.backbone if table1 else params.models.ablation_backbone
    train_set = args.train_set if table1 else params.ablations.train_set
    own = () if table1 else ("models.ablation_backbone", "ablations.train_set")
    if args.study == "ablation-base":
        own += ("ablations.extra_base",)
    if args.action == "train":
        # Lazy, by action: a training stage loads (and declares in dvc.yaml) the trainer, an evaluation stage
        # the evaluator, never the other side (each would add ~1 s of imports: pandas, OpenCV, tqdm...).
        from pipelines.training.fingerprint import train_params_keys

        prior = ("prior",) if not table1 or args.stage in ("stage2", "stage3") else ()
        return train_params_keys(backbone, train_set) + prior + own
    ablations = () if table1 else ("ablations", "prior.T")
    return ("profile", f"train_sets.{train_set}.test", "data.test", "data.max_pixels", "evaluate", "train.seeds",
            "train.threads", f"backbone_train.{backbone}", "mlflow_tracking_uri") + ablations + own


def run(args) -> int:
    params = load_params(args.params, profile=args.profile)
    table1 = args.study == "table1"
    if table1 and args.train_set is not None and params.train_sets.get(args.train_set) is None:
        raise InvalidInputError(f"--train-set {args.train_set!r}: not a training set of params train_sets "
                                f"({', '.join(params.train_sets)})")
    params = restrict(params, stage_params_keys(params, args), f"study {args.action} --study {args.study}")
    if args.action == "train":
        from pipelines.training.study_training import (
            train_action,  # lazy by action (stage_params_keys)
        )

        train_action(params, args)
    else:
        from pipelines.evaluation.study_evaluation import (
            evaluate_action,  # lazy by action (stage_params_keys)
        )

        evaluate_action(params, args)
    return 0
