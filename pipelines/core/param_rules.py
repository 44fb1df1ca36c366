"""The rules every value of the params schema (:mod:`pipelines.core.config`) follows, and the command-line
numbers that feed the same code:

* strict scalars (:class:`Strict`): ``true`` is not a step count, ``1`` or ``"yes"`` not a switch, ``5.0``
  not an integer;
* every float finite: ``.inf`` / ``.nan`` (or the strings ``"inf"``, ``"nan"``) are refused for every float
  field, naming the key (``allow_inf_nan=False``);
* a value quoted in an error is cut short (:func:`shown`): a YAML alias bomb (a few lines that expand to
  billions of items) as a number is refused in milliseconds, not after minutes of ``repr``;
* names used in paths (test sets, training sets, datasets: :data:`Name`; archive and list files:
  :data:`FileName`) are safe identifiers: no ``/``, no ``..``;
* seeds (:data:`Seed`, :func:`seed_argument`) are integers in ``0 .. MAX_SEED``: every generator we feed
  (NumPy's ``SeedSequence``, torch's ``manual_seed``) takes them.
"""
from __future__ import annotations

import argparse
import re
import types
from collections.abc import Mapping
from typing import Annotated, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MAX_SEED = 2**32 - 1
# a test set, training set or dataset name: a folder name, a DVC stage name part and part of MLflow metric
# names; no '-' (the DVC matrix and the Table-1 columns, e.g. realblur_j-official, join with it), no '/'
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# a file name (an archive, a list file inside it): no folder part, no leading dot (so neither . nor ..)
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"



def _safe_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(f"{shown(value)} is not a safe name (it names folders): lowercase letters, digits and _, "
                         f"starting with a letter (pattern {NAME_PATTERN})")
    return value


def _file_name(value: str) -> str:
    if not re.fullmatch(FILE_NAME_PATTERN, value):
        raise ValueError(f"{shown(value)} is not a plain file name: letters, digits, '.', '_', '+' and '-', no folder "
                         f"part, not starting with a dot (pattern {FILE_NAME_PATTERN})")
    return value


Name = Annotated[str, AfterValidator(_safe_name)]
FileName = Annotated[str, AfterValidator(_file_name)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def shown(value, limit: int = 60) -> str:
    """``value`` for an error message, short whatever its size: a list or mapping by its length only (an
    alias bomb's ``repr`` would take minutes and gigabytes), a scalar's ``repr`` cut to ``limit`` characters."""
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} key(s)"
    text = repr(value[:limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def strict_problem(annotation, value) -> str | None:
    """Why ``value`` is not strictly an ``annotation`` (``true`` for an integer, ``1`` or ``"yes"`` for a
    boolean, ``5.0`` or ``"5"`` for an integer), or None. Only bool / int / float and containers of them
    are checked here; pydantic validates everything else."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return strict_problem(get_args(annotation)[0], value)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if value is None and len(args) < len(get_args(annotation)):
            return None
        problems = [strict_problem(a, value) for a in args]
        return None if any(p is None for p in problems) else problems[0]
    if annotation is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {shown(value)}"
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"expected an integer, got {shown(value)}"
    if annotation is float:
        return f"expected a number, got {shown(value)}" if isinstance(value, bool) else None
    if origin is list and isinstance(value, list):
        for i, item in enumerate(value):
            problem = strict_problem(get_args(annotation)[0], item)
            if problem:
                return f"item {i}: {problem}"
    if origin is tuple and isinstance(value, (list, tuple)):
        for i, (arg, item) in enumerate(zip(get_args(annotation), value)):
            problem = None if arg is Ellipsis else strict_problem(arg, item)
            if problem:
                return f"item {i}: {problem}"
    if origin is dict and isinstance(value, dict):
        for key, item in value.items():
            problem = strict_problem(get_args(annotation)[1], item)
            if problem:
                return f"{key}: {problem}"
    return None


class Strict(BaseModel):
    """The base of every params section: unknown keys refused, scalars strict, floats finite."""
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value, info):
        problem = strict_problem(cls.model_fields[info.field_name].annotation, value)
        if problem:
            raise ValueError(problem)
        return value


def seed_argument(text: str) -> int:
    """An argparse ``type`` for a seed option: an integer in ``0 .. MAX_SEED``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be between 0 and {MAX_SEED}, got {text}")
    return value
