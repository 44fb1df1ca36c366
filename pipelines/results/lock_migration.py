"""Carrying a finished study over to Table 1's training-set dimension (issue 15) without retraining: the
work behind ``blurdm-bench migrate-lock``.

Before, Table 1 had one training set (params ``data.train``): DVC stages ``train_stage1@<backbone>`` ...
``evaluate_table1@<backbone>``, runs under ``runs/table1/<backbone>/``, evaluations under
``eval/table1/<backbone>/``, curves under ``plots/training/table1/<backbone>/``. Now each is per training set
(params ``train_sets``): ``train_stage1@<train_set>-<backbone>``, ``runs/table1/<train_set>/<backbone>/``...
(:mod:`pipelines.core.layout`). The old single training set becomes ``--train-set`` (default: the first of
``train_sets``). The command

1. **renames** the Table-1 entries of ``dvc.lock`` and rewrites, in them and in the ablation entries, the
   command (as dvc.yaml now resolves it), the paths of deps and outs, and the params the stages declare
   instead of ``data.train``: ``train_sets.<set>.train`` (when its folder is the one the runs trained on),
   ``ablations.train_set``, and ``train_sets.<set>.test`` (when the set's test list is the test sets the old
   evaluation scored, none of them RealBlur: those are now scored two ways);
2. **moves** the run, evaluation and curve folders to the new layout (the same bytes: their recorded hashes
   stay valid);
3. **accepts** (unless ``--no-accept``), like ``dvc commit -f`` on that stage, what then still differs in a
   stage of the lock when it is only (a) project code (files under ``pipelines/`` and ``models/``, changed or
   newly declared: the commit that brought this layout changes the stages' code, not what they compute) and (b) keys of the ``profiles``
   block that the stage does not read (other profiles, and keys of the active one that none of its declared
   params covers). Anything else (data, other params, missing outputs, a changed command) is left for
   ``dvc repro`` and reported. Run it right after checking out this commit: code edits made since would be
   accepted too. ``tables`` and ``report`` are never accepted (:data:`NOT_ACCEPTED`): this commit changes
   their output (the Table-1 rows name their training set), and they rerun in seconds.

Everything is planned and checked before anything changes; the folders are then moved (a failed move is
undone) and ``dvc.lock`` replaced atomically. Running it again finds nothing to do.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.names import BACKBONES, scorings
from pipelines.core.config import deep_merge, load_params, params_path
from pipelines.core.errors import InvalidInputError, MissingFileError
from pipelines.core.files import write_text
from pipelines.core.params_view import covers

TABLE1_FAMILIES = ("train_stage1", "train_stage2", "train_stage3", "train_baseline", "evaluate_table1")
ABLATION_FAMILIES = ("ablation_prior", "ablation_stages", "t_sweep", "evaluate_ablations")
MOVED_ROOTS = ("runs/table1", "eval/table1", "plots/training/table1")  # <root>/<backbone> -> <root>/<set>/<backbone>
PARAMS_FILE = "params.yaml"
CODE_DEPS = ("pipelines/", "models/", "models")  # what this commit changed in every stage
# stages whose outputs this commit does change (table1.json rows gain train_set / scoring): never accepted
NOT_ACCEPTED = ("tables", "report")


@dataclass
class Plan:
    lock: dict  # the new dvc.lock
    renamed: dict[str, str] = field(default_factory=dict)  # old stage name -> new
    rewritten: list[str] = field(default_factory=list)  # other entries that changed
    moves: list[tuple[Path, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what `dvc repro` will rerun, and why

    @property
    def empty(self) -> bool:
        return not (self.renamed or self.rewritten or self.moves)


@dataclass
class Target:
    """What the old study becomes: its training set, as the params and dvc.yaml now say."""
    root: Path
    train_set: str
    params: object  # the validated params (resolved profile)
    raw: dict  # params.yaml as written (what DVC records)
    stages: dict[str, str]  # DVC stage name -> its command, as dvc.yaml now resolves


def _is_old(name: str) -> tuple[str, str] | None:
    """``(family, backbone)`` of an old Table-1 stage name (``train_stage1@mimo_unet``), else None."""
    family, _, item = name.partition("@")
    return (family, item) if family in TABLE1_FAMILIES and item in BACKBONES else None


def new_path(path: str, train_set: str) -> str:
    """A deps / outs path of the old layout in the new one (``runs/table1/mimo_unet/stage1`` ->
    ``runs/table1/<train_set>/mimo_unet/stage1``); any other path as it is."""
    for prefix in MOVED_ROOTS:
        if path.startswith(prefix + "/") and path[len(prefix) + 1:].split("/")[0] in BACKBONES:
            return f"{prefix}/{train_set}/{path[len(prefix) + 1:]}"
    return path


def _old_resolved(recorded: dict, section: str, key: str):
    """The value the old stage used for ``section.key``: the recorded base value with the recorded active
    profile's overlay (``None`` when neither is recorded)."""
    overlay = _overlay(recorded, recorded.get("profile")).get(section) or {}
    base = recorded.get(f"{section}.{key}")
    if key in overlay:
        value = overlay[key]
        return deep_merge(base, value) if isinstance(base, dict) and isinstance(value, dict) else value
    return base


def _move_paths(entry: dict, train_set: str) -> None:
    for side in ("deps", "outs"):
        for item in entry.get(side) or []:
            item["path"] = new_path(item["path"], train_set)
        if entry.get(side):
            entry[side] = sorted(entry[side], key=lambda d: d["path"])  # as DVC writes them


def _rewrite_train_params(name: str, recorded: dict, target: Target, notes: list[str], ablation: bool) -> None:
    """``data.train`` -> ``train_sets.<set>.train`` (and ``ablations.train_set`` for an ablation), when the
    old runs trained on that set's folder."""
    ts = target.train_set
    if "data.train" in recorded:
        used = _old_resolved(recorded, "data", "train")
        recorded.pop("data.train")
        if used == target.params.train_sets[ts].train:
            recorded[f"train_sets.{ts}.train"] = target.raw["train_sets"][ts]["train"]
        else:
            notes.append(f"{name}: trained on {used}, training set {ts} is {target.params.train_sets[ts].train}: "
                         f"left to retrain")
    if ablation and target.params.ablations.train_set == ts and "ablations" not in recorded:
        recorded["ablations.train_set"] = ts


def _rewrite_test_params(name: str, recorded: dict, target: Target, notes: list[str]) -> None:
    """``train_sets.<set>.test`` for an evaluation that scored exactly that set's test sets (none RealBlur)."""
    ts = target.train_set
    if "data.test" not in recorded:
        return
    scored = list(_old_resolved(recorded, "data", "test") or {})
    tests = list(target.params.train_sets[ts].test)
    if scored == tests and all(scorings(t) == (None,) for t in tests):
        recorded[f"train_sets.{ts}.test"] = copy.deepcopy(target.raw["train_sets"][ts]["test"])
    else:
        notes.append(f"{name}: scored {', '.join(scored) or 'nothing'}, training set {ts} lists "
                     f"{', '.join(tests)} (RealBlur sets are now scored two ways): left to re-evaluate")


def _migrate_entry(name: str, entry: dict, target: Target, notes: list[str]) -> tuple[str, dict]:
    """The new name and entry of one old lock entry (Table 1 or an ablation)."""
    entry = copy.deepcopy(entry)
    old = _is_old(name)
    new_name = f"{old[0]}@{target.train_set}-{old[1]}" if old else name
    if new_name not in target.stages:
        raise InvalidInputError(f"dvc.lock: {name} would become {new_name}, which dvc.yaml does not define "
                         f"(stages of this family: {', '.join(s for s in target.stages if s.startswith(old[0]))})")
    entry["cmd"] = target.stages[new_name]
    _move_paths(entry, target.train_set)
    recorded = (entry.get("params") or {}).get(PARAMS_FILE)
    if recorded is not None:
        family = name.partition("@")[0]
        if family.startswith("evaluate"):
            _rewrite_test_params(new_name, recorded, target, notes)
            ablations = recorded.get("ablations")  # evaluate_ablations declares the whole block
            if isinstance(ablations, dict) and target.params.ablations.train_set == target.train_set:
                recorded["ablations"] = {"train_set": target.train_set, **ablations}
        else:
            _rewrite_train_params(new_name, recorded, target, notes, ablation=family in ABLATION_FAMILIES)
        entry["params"][PARAMS_FILE] = dict(sorted(recorded.items()))
    return new_name, entry


def _moves(root: Path, train_set: str) -> list[tuple[Path, Path]]:
    moves = []
    for prefix in MOVED_ROOTS:
        for backbone in BACKBONES:
            src, dst = root / prefix / backbone, root / prefix / train_set / backbone
            if src.is_dir():
                if dst.exists():
                    raise InvalidInputError(f"{src} and {dst} both exist: which one is the study's? Remove one and rerun")
                moves.append((src, dst))
    return moves


def plan_migration(target: Target, lock: dict) -> Plan:
    """What migrating ``lock`` (dvc.lock's content) to ``target`` changes; nothing is touched."""
    stages = lock.get("stages") or {}
    out: dict = {}
    plan = Plan(lock={**lock, "stages": out})
    for name, entry in stages.items():
        family = name.partition("@")[0]
        if _is_old(name) or family in ABLATION_FAMILIES:
            new_name, new_entry = _migrate_entry(name, entry, target, plan.notes)
            if new_name in stages and new_name != name:
                raise InvalidInputError(f"dvc.lock has both {name} and {new_name}: migrated already?")
            if new_name != name:
                plan.renamed[name] = new_name
            elif new_entry != entry:
                plan.rewritten.append(name)
            out[new_name] = new_entry
        else:
            out[name] = entry
    plan.moves = _moves(target.root, target.train_set)
    return plan


def apply(plan: Plan, root: Path) -> None:
    """Move the folders (undone if one fails), then replace dvc.lock atomically."""
    text = yaml.safe_dump(plan.lock, sort_keys=False, width=120)
    done: list[tuple[Path, Path]] = []
    try:
        for src, dst in plan.moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            os.rename(dst, src)
        raise
    write_text(root / "dvc.lock", text)


# ---------------------------------------------------------------------------------------------
# step 3: accept this commit's code (and the profiles the stage does not read), stage by stage
# ---------------------------------------------------------------------------------------------
def _flat(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict) and obj:
        return {k: v for key, value in obj.items() for k, v in _flat(value, f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: obj}


def _overlay(params: dict, profile: str | None) -> dict:
    """The active profile's overlay in ``params`` (a lock's recorded params, or params.yaml): locks before
    stages declared ``profiles.${profile}`` recorded the whole ``profiles`` block."""
    if "profiles" in params:
        return ((params.get("profiles") or {}).get(profile)) or {}
    return params.get(f"profiles.{profile}") or {}


def _at(params: dict, key: str):
    """The value at dotted ``key`` of a params mapping (a lock entry's keys may themselves be dotted)."""
    if key in params:
        return params[key]
    for split in range(len(key.split(".")) - 1, 0, -1):  # the longest recorded prefix first
        prefix = ".".join(key.split(".")[:split])
        if prefix in params and isinstance(params[prefix], dict):
            return _at(params[prefix], ".".join(key.split(".")[split:]))
    return None


def _effective(recorded: dict, profile: str | None, key: str):
    """What the old study computed with for ``key``: its base value in the lock with the active profile's overlay
    merged on (locks from before params.yaml was composed for one profile recorded both)."""
    def merged(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merged(base.get(k), over[k]) if k in over else base[k] for k in {**base, **over}}
        return over if over is not None else base

    return merged(_at(recorded, key), _at(_overlay(recorded, profile), key))


def why_not_acceptable(changes: list, recorded: dict, raw: dict) -> list[str]:
    """What in a stage's ``dvc status`` entry (``changes``) is more than project code and a change of layout of
    the params (``recorded``: its params in dvc.lock; ``raw``: params.yaml now, composed for one profile). [] =
    nothing. Locks written before params.yaml was composed for one profile recorded the base keys plus the
    profiles' overlays (the whole ``profiles`` block, or ``profiles.<active>``): a params change is accepted when
    every key the stage declares has the same effective value (base + the active overlay) as params.yaml now."""
    declared = [k for k in recorded if k != "profile" and not covers("profiles", k)]
    profile = recorded.get("profile")
    same = profile == raw.get("profile") and all(_effective(recorded, profile, k) == _at(raw, k) for k in declared)
    problems = []
    for change in changes:
        if not isinstance(change, dict) or set(change) != {"changed deps"}:
            problems.append(str(change))
            continue
        for path, status in change["changed deps"].items():
            if path == PARAMS_FILE and isinstance(status, dict):
                for key in status:
                    layout_only = same and (covers("profiles", key) or key in declared)
                    if not layout_only:
                        problems.append(f"params {key}: {status[key]}")
            elif not (status in ("modified", "new") and (path.startswith(CODE_DEPS[:2]) or path == CODE_DEPS[2])):
                problems.append(f"{path}: {status}")
    return problems


def accept_code_changes(root: Path, stages: list[str], lock: dict, raw: dict) -> tuple[list[str], list[str]]:
    """``dvc commit -f`` each of ``stages`` whose remaining changes :func:`why_not_acceptable` accepts;
    returns (accepted, notes on the others)."""
    from dvc.repo import Repo  # lazy: an optional heavy library (~0.4 s), and only here is the DVC project read

    accepted, notes = [], []
    cwd = os.getcwd()
    os.chdir(root)  # DVC resolves stage names against the dvc.yaml of the working directory
    try:
        _accept(Repo(str(root)), stages, lock, raw, accepted, notes)
    finally:
        os.chdir(cwd)
    return accepted, notes


def _accept(repo, stages: list[str], lock: dict, raw: dict, accepted: list[str], notes: list[str]) -> None:
    with repo:
        status = repo.status(targets=stages)
        for name in stages:
            changes = status.get(name) or []
            if not changes:
                continue
            recorded = ((lock["stages"][name].get("params") or {}).get(PARAMS_FILE)) or {}
            problems = why_not_acceptable(changes, recorded, raw)
            if problems:
                notes.append(f"{name}: not accepted ({'; '.join(problems)}): `dvc repro` reruns it")
                continue
            repo.commit(name, force=True)
            accepted.append(name)


def load_target(root: Path, train_set: str | None) -> Target:
    from dvc.repo import Repo  # lazy, as in accept_code_changes

    params = load_params(params_path())
    raw = yaml.safe_load(params_path().read_text())
    name = train_set or next(iter(params.train_sets))
    if name not in params.train_sets:
        raise InvalidInputError(f"--train-set {name!r}: not a training set of params train_sets ({', '.join(params.train_sets)})")
    from dvc.exceptions import DvcException

    try:
        with Repo(str(root)) as repo:
            stages = {stage.name: stage.cmd for stage in repo.index.stages}
    except DvcException as err:  # dvc.yaml or dvc.lock that DVC cannot read: one line, naming what DVC names
        # DVC names the file relative to the working directory: name it absolutely, the lock when DVC blames it
        culprit = root / ("dvc.lock" if "dvc.lock" in str(err) else "dvc.yaml")
        raise InvalidInputError(f"{culprit}: DVC cannot read the project ({err})") from None
    return Target(root=root, train_set=name, params=params, raw=raw, stages=stages)


def read_lock(path: Path) -> dict:
    """dvc.lock's content; a file that is not a DVC lock file (not YAML, no ``stages`` mapping of stage entries)
    is an :class:`InvalidInputError` naming it."""
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no dvc.lock: nothing to migrate") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise InvalidInputError(f"{path}: expected a DVC lock file (a 'stages' mapping)")
    bad = [name for name, entry in lock["stages"].items() if not isinstance(entry, dict)]
    if bad:
        raise InvalidInputError(f"{path}: stages.{bad[0]}: expected a stage entry (a mapping with cmd, deps, outs)")
    return lock
