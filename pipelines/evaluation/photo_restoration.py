"""Restoring one's own photos with a trained model: the work behind ``blurdm-bench deblur``.

Inputs are image files and/or folders (searched recursively; hidden files skipped). Every image is
read through :mod:`pipelines.data.image_files` (grayscale replicated to RGB, alpha dropped, 16-bit rounded to
8-bit, EXIF orientation applied; each conversion is printed), restored at full resolution exactly as
in evaluation (:func:`models.inference.restore_image`: padding, LoFormer tiles) and written as an
8-bit RGB PNG:

* a file ``IN/photo.jpg`` -> ``OUT/photo.png``; a folder ``IN/`` -> ``OUT/<path inside IN>.png``;
* two inputs that would give the same output name keep their extension (``photo.jpg.png``);
* an output never replaces an input file, nor another output: such an output is named
  ``<stem>_deblurred.png`` (``<stem>_deblurred-2.png`` ... when that is taken too).

A file that cannot be read (corrupt, truncated, not an image, several frames), restored or written (an
output name over the filesystem's 255 bytes) is reported by name and skipped; the others are still
written. The exit code is 1 when any file failed (the count is printed), 0 otherwise. A diffusion prior
draws its noise from a CPU generator seeded with ``--seed`` (the same for every image), so a rerun gives
the same pixels.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from models.inference import restore_image
from pipelines.core.errors import MissingFileError
from pipelines.core.files import NAME_MAX, name_bytes, walk_files
from pipelines.data.image_files import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    read_image,
    write_png,
)

DEFAULT_SEED = 2023  # the authors' fixed test seed


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def collect_inputs(inputs: list[str | os.PathLike], log=None) -> list[tuple[Path, Path]]:
    """``(file, relative output stem path)`` for every input image, in a stable order (duplicates dropped).

    A file given by name is taken whatever its extension (a non-image is then reported as unreadable);
    inside folders only files with a known image extension are taken, folder symlinks are followed
    but never round a loop, and a broken or looping file symlink is skipped with a warning naming it
    (``log``; :func:`pipelines.core.files.walk_files`).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for file in walk_files(path, IMAGE_EXTENSIONS, warn=log):
                if file.resolve() not in seen:
                    seen.add(file.resolve())
                    found.append((file, file.relative_to(path)))
        elif path.exists():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, Path(path.name)))
        elif path.is_symlink():
            raise MissingFileError(f"{path}: input is a broken or looping symbolic link")
        else:
            raise MissingFileError(f"{path}: input does not exist")
    return found


def plan_outputs(inputs: list[tuple[Path, Path]], out_dir: str | os.PathLike) -> list[Job]:
    """Output path of every input (see the module doc for the naming rules).

    Every output is distinct from every other output and from every input file (compared by real path, so
    ``-o`` may be the input folder itself): a name that is taken gets ``_deblurred``, then
    ``_deblurred-2``, ``_deblurred-3`` ... until it is free."""
    out_dir = Path(out_dir)
    plain = [out_dir / rel.with_suffix(".png") for _, rel in inputs]
    counts: dict[Path, int] = {}
    for target in plain:
        counts[target] = counts.get(target, 0) + 1
    taken = {os.path.realpath(src) for src, _ in inputs}  # inputs, then the outputs given so far
    jobs = []
    for (src, rel), target in zip(inputs, plain):
        if counts[target] > 1:
            target = out_dir / rel.parent / (rel.name + ".png")
        stem, number = target.stem, 1
        while os.path.realpath(target) in taken:
            target = target.with_name(f"{stem}_deblurred{'' if number == 1 else f'-{number}'}.png")
            number += 1
        taken.add(os.path.realpath(target))
        jobs.append(Job(src, target))
    return jobs


def deblur_files(model, jobs: list[Job], device: str | torch.device = "cpu", seed: int = DEFAULT_SEED,
                 progress: bool = True, log=None, fast: bool = False) -> list[tuple[Path, str]]:
    """Restore every job; return ``(file, problem)`` for those that failed (the others are written)."""
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    failures: list[tuple[Path, str]] = []
    device = torch.device(device)
    model = model.to(device).eval()
    for job in tqdm(jobs, desc="deblur", unit="img", disable=not progress):
        if name_bytes(job.target.name) > NAME_MAX:  # known before any work: say so, not "restoration failed"
            problem = (f"{job.source}: output file name too long: {job.target.name[:40]}... would be "
                       f"{name_bytes(job.target.name)} bytes, a file name has at most {NAME_MAX}; rename the input")
            failures.append((job.source, problem))
            log(f"skipped: {problem}")
            continue
        try:
            image, info = read_image(job.source)
        except ImageReadError as err:
            failures.append((job.source, str(err)))  # the message names the file
            log(f"skipped: {err}")
            continue
        if info.conversions:
            log(f"{job.source}: {', '.join(info.conversions)}")
        try:
            generator = torch.Generator().manual_seed(int(seed))
            restored, _ = restore_image(model, image, None, generator, device, fast=fast)
        except (RuntimeError, ValueError, OSError) as err:  # e.g. out of memory: report, keep going
            failures.append((job.source, f"restoration failed: {type(err).__name__}: {err}"))
            log(f"failed {job.source}: {type(err).__name__}: {err}")
            continue
        try:
            write_png(job.target, restored)
        except OSError as err:  # the output, not the restoration (its message names the file)
            failures.append((job.source, f"cannot write {job.target}: {err.strerror or err}"))
            log(f"failed {job.source}: cannot write {job.target}: {err.strerror or err}")
    return failures
