"""What a stage may read of the params, and what it did read.

:class:`ParamsView` wraps the validated :class:`pipelines.core.config.Params` (or any part of it). It reads like
the object it wraps (``view.train.steps.stage1``, ``view.data.test["synthetic"]``, ``view.for_backbone(b)``),
with two additions:

* ``keys``: the dotted params keys the holder may read (the blocks a stage declares in dvc.yaml, e.g.
  ``("train", "data", "models.scale")``). Reading anything else raises :class:`UndeclaredParamsRead`
  naming the key. ``None`` allows every key.
* ``reads``: a set that collects every key read, as the most specific dotted path (``train.steps.stage1``;
  ``train`` when the whole block was dumped). ``tests/test_dependencies.py`` runs every DVC stage with a
  recording view (``$BLURDM_RECORD_READS``, see :func:`record_reads_at_exit`) and checks that dvc.yaml
  declares what was read.

:func:`restrict` gives a stage's code only the blocks it declares.
"""
from __future__ import annotations

import atexit
import copy
import json
import os
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel

RECORD_ENV = "BLURDM_RECORD_READS"  # a file: the stage's reads and project imports land there at exit
PROJECT_PACKAGES = ("pipelines", "models", "reports")


class UndeclaredParamsRead(KeyError):
    """Code read a params key its stage does not declare."""

    def __str__(self) -> str:
        return str(self.args[0])


def covers(declared: str, key: str) -> bool:
    """Whether declaring ``declared`` (a dotted key; ``""`` = everything) covers reading ``key``."""
    return declared == "" or key == declared or key.startswith(declared + ".")


class _Access:
    """The shared state of a view tree: allowed keys, the reads, who holds it (for messages)."""

    def __init__(self, keys: Iterable[str] | None, reads: set[str] | None, holder: str):
        self.keys = None if keys is None else tuple(keys)
        self.reads = reads
        self.holder = holder

    def check(self, key: str, whole: bool) -> None:
        """``key`` is read (``whole``: all of it, else only on the way to a declared key below it)."""
        if self.keys is not None:
            ok = any(covers(k, key) or (not whole and covers(key, k)) for k in self.keys)
            if not ok:
                raise UndeclaredParamsRead(f"{self.holder} read params key {key!r}, which it does not declare "
                                           f"(declared: {', '.join(self.keys) or 'none'})")
        if whole and self.reads is not None:
            self.reads.add(key)


def _join(path: str, name) -> str:
    return f"{path}.{name}" if path else str(name)


def _wrap(value, path: str, access: _Access):
    if isinstance(value, BaseModel):
        access.check(path, whole=False)
        return ParamsView(value, _path=path, _access=access)
    if isinstance(value, Mapping):
        access.check(path, whole=False)
        return MappingView(value, path, access)
    access.check(path, whole=True)
    return value


class ParamsView:
    """A read-only, access-checked and recorded view of a pydantic params model (see module doc)."""

    def __init__(self, model: BaseModel, keys: Iterable[str] | None = None, reads: set[str] | None = None,
                 holder: str = "this stage", *, _path: str = "", _access: _Access | None = None):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_path", _path)
        object.__setattr__(self, "_access", _access or _Access(keys, reads, holder))

    def __getattr__(self, name: str):
        model, path, access = self._model, self._path, self._access
        if name in ("model_dump", "model_dump_json"):  # reads the whole block
            access.check(path, whole=True)
            return getattr(model, name)
        if name == "model_copy":  # a copy is not a read; what is read from it is
            return lambda **kw: ParamsView(model.model_copy(**kw), _path=path, _access=access)
        attr = getattr(type(model), name, None)
        if isinstance(attr, property):
            return attr.fget(self)
        if isinstance(attr, types.FunctionType):  # our own methods: their reads go through the view
            return types.MethodType(attr, self)
        if name.startswith("_") or name not in type(model).model_fields:
            return getattr(model, name)
        return _wrap(getattr(model, name), _join(path, name), access)

    def __setattr__(self, name, value):
        raise AttributeError(f"params are read-only ({_join(self._path, name)})")

    def __eq__(self, other) -> bool:
        return isinstance(other, ParamsView) and self._model == other._model

    def __repr__(self) -> str:
        keys = self._access.keys
        return f"ParamsView({self._path or 'params'}, keys={'all' if keys is None else list(keys)})"


class MappingView(Mapping):
    """A dict inside the params (``data.test``, ``backbone_train``): ``view[key]`` reads ``path.key``;
    iterating reads which keys exist (the whole mapping)."""

    def __init__(self, mapping: Mapping, path: str, access: _Access):
        self._mapping, self._path, self._access = mapping, path, access

    def __getitem__(self, key):
        value = self._mapping[key]
        return _wrap(value, _join(self._path, key), self._access)

    def get(self, key, default=None):
        if key not in self._mapping:  # asking for an absent key still depends on it
            self._access.check(_join(self._path, key), whole=True)
            return default
        return self[key]

    def __contains__(self, key) -> bool:
        self._access.check(_join(self._path, key), whole=True)
        return key in self._mapping

    def __iter__(self):
        self._access.check(self._path, whole=True)
        return iter(self._mapping)

    def __len__(self) -> int:
        self._access.check(self._path, whole=True)
        return len(self._mapping)

    def __deepcopy__(self, memo):
        self._access.check(self._path, whole=True)
        return copy.deepcopy(dict(self._mapping), memo)


def restrict(params, keys: Iterable[str], holder: str) -> ParamsView:
    """``params`` (a :class:`pipelines.core.config.Params` or a view of it) seen through ``keys`` only; reads
    are still recorded by the recording view underneath, if any."""
    access = params._access if isinstance(params, ParamsView) else None
    reads = access.reads if access is not None else None
    model = params._model if isinstance(params, ParamsView) else params
    return ParamsView(model, keys, reads, holder)


# ------------------------------------------------------------------------------------------------
# recording a whole stage process (the dependency check)

_RECORDED: set[str] | None = None
_OPENED: set[str] = set()


def _audit(event: str, args) -> None:
    """Project files the process opens (templates, kernels, checksums, published numbers...)."""
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
        mode = args[1] if len(args) > 1 else "r"
        if isinstance(mode, str) and not any(c in mode for c in "wax+"):
            _OPENED.add(os.fspath(args[0]))


def recording_view(params: BaseModel, always_read: Iterable[str] = ()) -> BaseModel | ParamsView:
    """With ``$BLURDM_RECORD_READS`` set: ``params`` as a recording view (every key allowed), whose reads,
    together with ``always_read`` and the project files the process imported or opened, are written as JSON to
    that file when the process exits. Without it: ``params`` itself."""
    global _RECORDED
    target = os.environ.get(RECORD_ENV)
    if not target:
        return params
    if _RECORDED is None:
        _RECORDED = set()
        atexit.register(_write_record, Path(target))
        sys.addaudithook(_audit)
    _RECORDED.update(always_read)
    return ParamsView(params, None, _RECORDED)


def project_files() -> list[str]:
    """Files of the project packages (relative to the repository) that this process imported or opened
    for reading: its code and its data (kernels, templates, checksums, published numbers)."""
    root = Path(__file__).resolve().parents[2]
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())} | _OPENED
    out = set()
    for file in files:
        if not file:
            continue
        path = Path(file)
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if path.is_relative_to(root) and path.relative_to(root).parts[0] in PROJECT_PACKAGES and path.is_file():
            out.add(path.relative_to(root).as_posix())
    return sorted(out)


def _write_record(target: Path) -> None:
    record = {"params": sorted(_RECORDED or ()), "files": project_files()}
    previous = json.loads(target.read_text()) if target.is_file() else {}
    merged = {k: sorted(set(previous.get(k, [])) | set(record[k])) for k in record}
    target.write_text(json.dumps(merged, indent=1))
