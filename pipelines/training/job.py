"""One training job = stage x backbone x prior x T x stage combo (``variant``) x seed, and where it reads and writes.

:class:`TrainJob` is the one description of a job. The command line of ``blurdm-bench train``
(:func:`add_job_arguments`, :func:`job_from_args`) and the argv that re-creates a job under ``torchrun``
(:func:`job_argv`) are derived from its fields: a new job field is one field here, with its help text in
:func:`option` (the flag is ``--`` + the field name with ``-`` for ``_`` unless the option names another).
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from models.names import DEFAULT_STAGE_COMBO, MAX_T, STAGE_COMBOS, STUDIES
from pipelines.core.config import BACKBONE_NAMES, DIFFUSION_PRIORS, STAGE_NAMES
from pipelines.core.errors import UserError
from pipelines.core.param_rules import MAX_SEED


def option(help: str | None = None, *, default=MISSING, default_factory=MISSING, flag: str | None = None,
           choices: tuple[str, ...] | None = None, from_params=None, cli: bool = True):
    """A :class:`TrainJob` field and its command-line option: ``help`` text, the ``flag`` (default from the
    field name), ``choices``; ``from_params(params)`` gives the value when the flag is not given (the flag's
    default is then ``None``); ``cli=False``: not on the command line."""
    metadata = {"help": help, "flag": flag, "choices": choices, "from_params": from_params, "cli": cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainJob:
    """One training job. Paths may be folders holding ``model.pt`` or the files themselves."""

    stage: str = option(choices=STAGE_NAMES)
    backbone: str = option(choices=BACKBONE_NAMES)
    out_dir: Path = option("output folder (last.pt, model.pt, metrics.json)", flag="--out")
    prior: str = option("diffusion prior (default: prior.name)", default="blurdm", choices=DIFFUSION_PRIORS,
                        from_params=lambda params: params.prior.name)
    T: int = option("diffusion steps (default: prior.T)", default=5, from_params=lambda params: params.prior.T)
    variant: str = option("stage combination", default=DEFAULT_STAGE_COMBO, choices=tuple(STAGE_COMBOS))
    seed: int = option("training seed (default: first of train.seeds)", default=0,
                       from_params=lambda params: params.train.seeds[0])
    stage1: Path | None = option("folder (or model.pt) of the finished stage-1 run", default=None)
    stage2: Path | None = option("folder (or model.pt) of the finished stage-2 run", default=None)
    data: Path | None = option("training pairs root (default: the training set's folder)", default=None)
    train_set: str | None = option("a training set of params train_sets: its folder holds the training pairs "
                                   "(default: the first)", default=None)
    steps: int | None = option("override the stage's number of steps", default=None)
    resume: bool = option("continue from OUT/last.pt if present (default: yes)", default=True)
    # DVC keeps train outputs (persist: true) so a killed stage resumes; when params changed since,
    # the stale state is discarded and the job starts over instead of refusing.
    restart_if_changed: bool = option("when OUT/last.pt was written by another configuration, start over instead "
                                      "of refusing (what the DVC stages use)", default=False)
    study: str = option("MLflow experiment", default="table1", choices=STUDIES)
    group: str | None = option("MLflow group tag (default: STUDY/BACKBONE/seedN)", default=None)
    dvc_stage: str | None = option("DVC stage name tag (default: $DVC_STAGE)", default=None)
    mlflow: bool = option("track in MLflow", default=True)
    extra_tags: dict = option(default_factory=dict, cli=False)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.stage1 = Path(self.stage1) if self.stage1 is not None else None
        self.stage2 = Path(self.stage2) if self.stage2 is not None else None
        self.data = Path(self.data) if self.data is not None else None
        if self.stage not in STAGE_NAMES:
            raise UserError(f"unknown stage {self.stage!r}; allowed: {', '.join(STAGE_NAMES)}")
        if self.variant not in STAGE_COMBOS:
            raise UserError(f"unknown variant {self.variant!r}; allowed: {', '.join(STAGE_COMBOS)}")
        combo_stages = STAGE_COMBOS[self.variant].stages
        if self.stage != "baseline" and self.stage not in combo_stages:
            raise UserError(f"variant {self.variant} has no {self.stage} (its stages: {', '.join(combo_stages)})")
        if self.backbone not in BACKBONE_NAMES:
            raise UserError(f"unknown backbone {self.backbone!r}; allowed: {', '.join(BACKBONE_NAMES)}")
        if self.prior not in DIFFUSION_PRIORS:
            raise UserError(f"unknown prior {self.prior!r}; allowed: {', '.join(DIFFUSION_PRIORS)}")
        if isinstance(self.T, bool) or not isinstance(self.T, int) or not 1 <= self.T <= MAX_T:
            raise UserError(f"--T must be an integer >= 1 and <= {MAX_T}, got {self.T!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be an integer between 0 and {MAX_SEED}, got {self.seed!r}")
        if self.steps is not None and self.steps < 0:
            raise UserError(f"--steps must be >= 0, got {self.steps}")
        if self.study not in STUDIES:
            raise UserError(f"unknown study {self.study!r}; allowed: {', '.join(STUDIES)}")

    @property
    def uses_prior(self) -> bool:
        return self.stage in ("stage2", "stage3")

    def describe(self) -> dict:
        """The job's identity (what MLflow tags and ``metrics.json`` record). ``variant`` is set for
        stage 3 only: stages 1 and 2 are shared by every variant that contains them."""
        return {"stage": self.stage, "backbone": self.backbone,
                "prior": self.prior if self.uses_prior else ("sharp_encoder" if self.stage == "stage1" else "none"),
                "T": self.T if self.uses_prior else None,
                "variant": self.variant if self.stage == "stage3" else None, "seed": self.seed}


# --------------------------------------------------------------------------------------------------
# the command line, from the fields

def _cli_fields():
    types = typing.get_type_hints(TrainJob)
    for f in fields(TrainJob):
        if f.metadata["cli"]:
            yield f, types[f.name]


def _flag(f) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainJob` field (see the module doc)."""
    for f, kind in _cli_fields():
        meta, kwargs = f.metadata, {"dest": f.name}
        if meta["help"]:
            kwargs["help"] = meta["help"]
        if kind is bool:
            if f.default:
                kwargs.update(action=argparse.BooleanOptionalAction, default=True)
            else:
                kwargs.update(action="store_true")
        else:
            if f.default is MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = None if meta["from_params"] else f.default
            if int in typing.get_args(kind) or kind is int:
                kwargs["type"] = int
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        parser.add_argument(_flag(f), **kwargs)


def job_from_args(args: argparse.Namespace, params) -> TrainJob:
    """The job the parsed options describe; an option left out that defaults from the params takes it."""
    values = {}
    for f, _ in _cli_fields():
        value = getattr(args, f.name)
        values[f.name] = f.metadata["from_params"](params) if value is None and f.metadata["from_params"] else value
    return TrainJob(**values)


def job_argv(job: TrainJob) -> list[str]:
    """The options that describe ``job`` (:func:`job_from_args` gives it back), e.g. for ``torchrun``."""
    argv: list[str] = []
    for f, kind in _cli_fields():
        value, flag = getattr(job, f.name), _flag(f)
        if kind is bool:
            if f.default:
                argv.append(flag if value else "--no-" + flag[2:])
            elif value:
                argv.append(flag)
        elif value is not None:
            argv += [flag, str(value)]
    return argv
