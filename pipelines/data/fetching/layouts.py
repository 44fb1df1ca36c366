"""Normalising an unpacked dataset into the layouts :func:`pipelines.data.pairs.find_pairs` reads.

GoPro    -> ``<out>/{train,test}/<scene>/{blur,sharp}/*.png`` (the ``blur_gamma`` copies are left out);
HIDE     -> ``<out>/test/{input,target}/*.png`` (official ``GT/`` + ``test/**`` or an ``{input,target}`` copy);
RealBlur -> ``<out>/{train,test}/{blur,sharp}/<scene>/<n>.png`` following the official list files
(``RealBlur_J_train_list.txt`` ..., each line ``<gt path> <blur path>``), or an existing
``<split>/{blur,sharp}/<scene>/`` copy.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipelines.core.config import DatasetSource
from pipelines.core.errors import UserError
from pipelines.data.fetching.unpack import member_name_problem

SPLITS = ("train", "test")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"



@dataclass(frozen=True)
class PlannedPair:
    """One blurred / sharp pair: source files and destinations relative to the output folder."""
    split: str
    blur: Path
    sharp: Path
    blur_dst: str
    sharp_dst: str


def _hidden(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _dirs_named(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(name) if p.is_dir() and not _hidden(p, root))


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()}


def _matched(blur_dir: Path, sharp_dir: Path) -> list[tuple[str, Path, Path]]:
    blur, sharp = _pngs(blur_dir), _pngs(sharp_dir)
    if blur.keys() != sharp.keys():
        only_blur = sorted(blur.keys() - sharp.keys())
        only_sharp = sorted(sharp.keys() - blur.keys())
        detail = (f"{len(only_blur)} without a sharp partner (e.g. {blur_dir / only_blur[0]})" if only_blur else
                  f"{len(only_sharp)} without a blurred partner (e.g. {sharp_dir / only_sharp[0]})")
        raise UserError(f"unpaired images: {blur_dir} and {sharp_dir} hold different file names: {detail}")
    return [(name, blur[name], sharp[name]) for name in sorted(blur)]


def plan_gopro(root: Path) -> list[PlannedPair]:
    """``.../{train,test}/<scene>/{blur,sharp}/*.png`` anywhere under ``root``."""
    pairs = []
    for blur_dir in _dirs_named(root, "blur"):
        if not blur_dir.with_name("sharp").is_dir():
            raise UserError(f"unpaired scene: {blur_dir} has no sibling sharp/ folder")
    for sharp_dir in _dirs_named(root, "sharp"):
        blur_dir = sharp_dir.with_name("blur")
        if not blur_dir.is_dir():
            raise UserError(f"unpaired scene: {sharp_dir} has no sibling blur/ folder")
        scene = sharp_dir.parent
        split = scene.parent.name
        if split not in SPLITS:
            raise UserError(f"{scene}: a GoPro scene folder must sit inside a train/ or test/ folder")
        for name, blur, sharp in _matched(blur_dir, sharp_dir):
            pairs.append(PlannedPair(split, blur, sharp, f"{split}/{scene.name}/blur/{name}",
                                     f"{split}/{scene.name}/sharp/{name}"))
    return pairs


def plan_flat(root: Path) -> list[PlannedPair]:
    """HIDE: official ``GT/`` + ``test/**/*.png`` (same file names), else ``[<split>/]{input,target}/``."""
    official = [gt for gt in _dirs_named(root, "GT") if (gt.parent / "test").is_dir()]
    if len(official) > 1:
        raise UserError(f"ambiguous HIDE source: several GT/ + test/ folders under {root}: {official}")
    if official:
        gt_dir = official[0]
        sharp_by_name = _pngs(gt_dir)
        test_dir = gt_dir.parent / "test"
        pairs = []
        for blur in sorted(p for p in test_dir.rglob("*.png") if p.is_file() and not _hidden(p, root)):
            sharp = sharp_by_name.get(blur.name)
            if sharp is None:
                raise UserError(f"unpaired image: {blur} has no ground truth {gt_dir / blur.name}")
            pairs.append(PlannedPair("test", blur, sharp, f"test/input/{blur.name}", f"test/target/{blur.name}"))
        return pairs
    pairs = []
    for input_dir in _dirs_named(root, "input"):
        target_dir = input_dir.with_name("target")
        if not target_dir.is_dir():
            continue
        split = input_dir.parent.name if input_dir.parent.name in SPLITS else "test"
        for name, blur, sharp in _matched(input_dir, target_dir):
            pairs.append(PlannedPair(split, blur, sharp, f"{split}/input/{name}", f"{split}/target/{name}"))
    return pairs


def _find_one_file(root: Path, name: str) -> Path | None:
    found = sorted((p for p in root.rglob(name) if p.is_file() and not _hidden(p, root)),
                   key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def _realblur_from_list(list_file: Path, split: str) -> list[PlannedPair]:
    base = list_file.parent
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{list_file}, line {number}"
        if len(tokens) < 2:
            raise UserError(f"{where}: expected '<gt path> <blur path>', got {line.strip()!r}")
        by_role = {role: tok for tok in tokens[:2] for role in ("gt", "blur") if role in PurePosixPath(tok).parts}
        gt_rel, blur_rel = (by_role["gt"], by_role["blur"]) if len(by_role) == 2 else (tokens[0], tokens[1])
        for rel in (gt_rel, blur_rel):
            problem = member_name_problem(rel)
            if problem:
                raise UserError(f"{where}: unsafe path {rel!r}: {problem}")
        blur, sharp = base / blur_rel, base / gt_rel
        for path in (blur, sharp):
            if not path.is_file():
                raise UserError(f"{where}: listed file {path} is missing")
        folders = [p for p in PurePosixPath(blur_rel).parts[:-1] if p not in ("blur", "gt")]
        scene = folders[-1] if folders else "scene"
        name = re.sub(r"^blur_", "", blur.name)
        pairs.append(PlannedPair(split, blur, sharp, f"{split}/blur/{scene}/{name}", f"{split}/sharp/{scene}/{name}"))
    return pairs


def plan_realblur(root: Path, lists: dict[str, str]) -> list[PlannedPair]:
    """Official list files when all are present, else an existing ``<split>/{blur,sharp}/<scene>/`` copy."""
    list_files = {split: _find_one_file(root, name) for split, name in lists.items()}
    if lists and all(list_files.values()):
        return [pair for split, path in list_files.items() for pair in _realblur_from_list(path, split)]
    pairs = []
    for split in SPLITS:
        for split_dir in _dirs_named(root, split):
            blur_root, sharp_root = split_dir / "blur", split_dir / "sharp"
            if not (blur_root.is_dir() and sharp_root.is_dir()):
                continue
            for scene in sorted(p for p in blur_root.iterdir() if p.is_dir()):
                if not (sharp_root / scene.name).is_dir():
                    raise UserError(f"unpaired scene: {scene} has no {sharp_root / scene.name}")
                for name, blur, sharp in _matched(scene, sharp_root / scene.name):
                    pairs.append(PlannedPair(split, blur, sharp, f"{split}/blur/{scene.name}/{name}",
                                             f"{split}/sharp/{scene.name}/{name}"))
    if not pairs and lists:
        missing = [lists[s] for s, p in list_files.items() if p is None]
        raise UserError(f"RealBlur list file(s) {missing} not found under {root}, and no "
                        f"<split>/{{blur,sharp}}/<scene>/ layout either")
    return pairs


LAYOUT_HELP = {
    "gopro": "<split>/<scene>/{blur,sharp}/*.png",
    "flat": "GT/ + test/**/*.png (HIDE) or [<split>/]{input,target}/*.png",
    "realblur": "the RealBlur list files or <split>/{blur,sharp}/<scene>/*.png",
}


def plan_pairs(spec: DatasetSource, root: Path) -> list[PlannedPair]:
    if spec.layout == "gopro":
        pairs = plan_gopro(root)
    elif spec.layout == "flat":
        pairs = plan_flat(root)
    else:
        pairs = plan_realblur(root, dict(spec.lists))
    if not pairs:
        raise UserError(f"no image pairs found under {root} (expected {LAYOUT_HELP[spec.layout]})")
    return pairs


def _check_png(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise UserError(f"{path}: not a PNG file")


def materialise(pairs: list[PlannedPair], dest: Path, move: bool) -> dict[str, int]:
    """Place every pair under ``dest`` (move from our own scratch unpack, else copy); pairs per split."""
    seen: set[str] = set()
    for pair in pairs:
        for rel in (pair.blur_dst, pair.sharp_dst):
            if rel in seen:
                raise UserError(f"two source images map to the same destination {rel}")
            seen.add(rel)
    placed: dict[Path, Path] = {}  # source -> first destination (a moved file is copied from there)
    counts = {split: 0 for split in SPLITS}
    for pair in tqdm(pairs, desc="normalise", unit="pair"):
        for src, rel in ((pair.blur, pair.blur_dst), (pair.sharp, pair.sharp_dst)):
            dst = dest / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src in placed:
                shutil.copy2(placed[src], dst)
                continue
            _check_png(src)
            if move and not src.is_symlink():
                os.replace(src, dst)
            else:
                shutil.copy2(src, dst)  # follows links
            placed[src] = dst
        counts[pair.split] += 1
    return {split: n for split, n in counts.items() if n}
