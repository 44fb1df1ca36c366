"""``blurdm-bench rehearse`` (``make rehearse``): the paper profile end to end, from ``fetch@gopro`` to ``report``,
on a CPU, in minutes.

1. writes miniature copies of the official GoPro, HIDE and RealBlur archives (:mod:`pipelines.rehearsal.archives`;
   small pairs, and one full-resolution 720 x 1280 HIDE test pair) and serves them on 127.0.0.1 with HTTP Range
   (:mod:`pipelines.rehearsal.server`): the fetch stages download them as they download the real ones;
2. copies the working tree into ``DIR/repo`` (a git repository of its own, the virtual environment linked in,
   MLflow in its own ``mlflow.db``): nothing the run writes touches this repository;
3. runs ``dvc exp run -S profile=paper`` there with the overrides of :mod:`pipelines.rehearsal.plan` (sizes,
   layout and the download source only; every other key is the paper profile's), logging every line with its
   time (``DIR/rehearsal.log``) and sampling the memory of the whole process tree;
4. checks the outcome (:mod:`pipelines.rehearsal.outcome`: every stage ran, the four Table-1 columns from the
   right training sets, the ablations on GoPro, bf16 / checkpointing / micro-batches, a 720p evaluation through
   every backbone and a 720p latency, the report), writes ``DIR/summary.json`` and prints one screen.

Exit status 0 when everything passed, 1 when a stage failed or a check found a problem.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from pipelines.core.config import read_params_file, repo_root
from pipelines.core.environment import OFFLINE_ENV
from pipelines.core.errors import UserError
from pipelines.core.files import write_json
from pipelines.rehearsal.archives import read_info, write_archives
from pipelines.rehearsal.outcome import check_run, summary_lines, table1_columns
from pipelines.rehearsal.plan import FULL_RES, Sizes, overrides
from pipelines.rehearsal.runner import (
    copy_repository,
    largest_child_rss,
    prepare_folder,
    run_logged,
)
from pipelines.rehearsal.server import serve

# glibc keeps freed memory for reuse instead of returning every block over 32 MB to the kernel: paper-scale
# inference at 720 x 1280 on a CPU otherwise spends about half its time in page faults (FFTformer: 325 s, half
# of it system time, against 227 s). Only the allocator's policy changes, no computation.
KEEP_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
# OpenMP threads wait for each other asleep, not spinning: on a machine whose cores are also busy with other work
# (a shared CI runner, the DVC process), spinning threads made one LoFormer training step 7-13x slower (65 s
# against 5-11 s). Only how idle threads wait changes, no computation.
OPENMP_WAIT = "PASSIVE"
# what a rehearsal writes: the paper-scale model.pt and last.pt (optimiser state included) of its 50 training runs,
# DVC's cache (hard links) and MLflow's artifacts: 19 GB measured on 2026-12-07. A disk that fills half-way fails
# the run late, so the rehearsal refuses to start without this much free space in its folder.
NEEDED_FREE_DISK_GB = 20.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None,
                        help="working folder (default: rehearsal/ in the repository, git-ignored); an earlier "
                             "rehearsal there is replaced")
    parser.add_argument("-S", "--set-param", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="one more Hydra override after the rehearsal's own (repeatable; the summary lists it)")
    parser.add_argument("--quick", action="store_true",
                        help="no full-resolution image anywhere (the HIDE test pair small, latency at 256 only): a "
                             "fast wiring check that does NOT rehearse the 720p paths")
    parser.add_argument("--min-free-disk-gb", type=float, default=NEEDED_FREE_DISK_GB, metavar="GB",
                        help=f"refuse to start with less free disk in the working folder (default {NEEDED_FREE_DISK_GB:g}: "
                             "a rehearsal writes ~19 GB; 0 skips the check)")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="run the stages with glibc keeping freed memory for reuse (GLIBC_TUNABLES; default on)")


def stage_env(copy: Path, keep_freed_memory: bool) -> dict:
    """The environment of the DVC run in ``copy``: its venv first on PATH, its code first on PYTHONPATH, its own
    MLflow store, offline, no BLURDM_* / DVC_* / MLFLOW_* setting of the caller's; glibc keeping freed memory
    (:data:`KEEP_FREED_MEMORY`) and OpenMP threads waiting asleep (:data:`OPENMP_WAIT`)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLURDM_", "DVC_", "MLFLOW_"))
           and k not in ("PYTHONPATH", "GLIBC_TUNABLES", "OMP_WAIT_POLICY")}
    env.update(OFFLINE_ENV)
    env.update(PATH=f"{copy / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(copy),
               BLURDM_ROOT=str(copy), MLFLOW_TRACKING_URI=f"sqlite:///{copy}/mlflow.db", PYTHONHASHSEED="0")
    if keep_freed_memory:
        env["GLIBC_TUNABLES"] = KEEP_FREED_MEMORY
    env["OMP_WAIT_POLICY"] = OPENMP_WAIT
    return env


def check_free_disk(folder: Path, needed_gb: float) -> None:
    """Refuse to start when ``folder``'s disk has less than ``needed_gb`` GB free (an earlier rehearsal there already
    removed): the run would otherwise fail half-way, when its checkpoints fill the disk."""
    free = shutil.disk_usage(folder).free
    if free < needed_gb * 1e9:
        raise UserError(f"{folder}: {free / 1e9:.1f} GB free on its disk, a rehearsal needs ~{needed_gb:g} GB (paper-scale "
                        "checkpoints of 50 training runs, DVC's cache, MLflow's artifacts): free some space or pass "
                        "--dir on a larger disk (--min-free-disk-gb 0 skips this check)")


def _venv() -> Path | None:
    """The virtual environment this command runs in (linked into the copy)."""
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None


def _dvc(copy: Path, env: dict, *args: str) -> str:
    return subprocess.run(["dvc", *args], cwd=copy, env=env, check=True, capture_output=True, text=True).stdout


def run(args) -> int:
    started = time.monotonic()
    # `kill PID` ends the rehearsal like Ctrl-C: the DVC run it started is ended too (runner.run_logged)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    src = repo_root()
    folder = (args.dir or src / "rehearsal").resolve()
    try:
        prepare_folder(folder)
    except FileExistsError as err:
        raise UserError(str(err)) from None
    check_free_disk(folder, args.min_free_disk_gb)
    sizes = Sizes()
    if args.quick:
        splits = {d: dict(v) for d, v in sizes.splits.items()}
        splits["hide"]["test"] = sizes.splits["gopro"]["test"]
        sizes = replace(sizes, splits=splits, cost_sizes=((256, 256),))
    phases: dict[str, float] = {}

    tick = time.monotonic()
    archives = folder / "archives"
    write_archives(archives, splits=sizes.splits)
    info = read_info(archives)
    copy = folder / "repo"
    source = copy_repository(src, copy, _venv())
    env = stage_env(copy, args.keep_freed_memory)
    # the copy's DVC cache links its outputs instead of copying them: paper-scale checkpoints are ~0.3 GB a run
    _dvc(copy, env, "config", "--local", "cache.type", "hardlink,copy")
    phases["archives and copy"] = time.monotonic() - tick
    print(f"rehearsal: archives in {archives} ({info['seconds']} s), copy of {src} "
          f"({source['commit'] or 'no commit'}{', with working-tree changes' if source['dirty'] else ''}) in {copy}",
          flush=True)

    log = folder / "rehearsal.log"
    with serve(archives) as url:
        hydra = ["profile=paper", *overrides(sizes, url, info, str(archives / "checksums.yaml")), *args.extra]
        argv = ["dvc", "exp", "run"] + [a for o in hydra for a in ("-S", o)]
        print(f"rehearsal: dvc exp run -S profile=paper + {len(hydra) - 1} overrides (archives served at {url}); "
              f"stage log: {log}", flush=True)
        tick = time.monotonic()
        result = run_logged(argv, copy, env, log)
        phases["dvc exp run"] = time.monotonic() - tick

    tick = time.monotonic()
    problems: list[str] = []
    expected: list[str] = []
    if result.returncode != 0:
        problems.append(f"dvc exp run failed (exit {result.returncode}); the last lines of {log}:")
        problems += [f"  {line}" for line in result.tail[-25:]]
    params = read_params_file(copy / "params.yaml")
    expected: list[str] = []  # the DAG's stages; unknown when the run composed another profile
    if params.get("profile") != "paper":
        problems.append(f"{copy / 'params.yaml'} was composed for profile {params.get('profile')!r}, not 'paper'")
    else:
        expected = _dvc(copy, env, "stage", "list", "--name-only").split()
        problems += check_run(copy, params, expected, [s.name for s in result.stages], result.skipped)
    phases["checks"] = time.monotonic() - tick
    seconds = time.monotonic() - started
    ok = not problems
    report = copy / "reports" / "site" / "index.html"
    largest = largest_child_rss()
    lines = summary_lines(ok=ok, problems=problems, stages=result.stages, expected=len(expected), seconds=seconds,
                          phases=phases, peak_rss=result.peak_rss, largest_process=largest, report=report,
                          log=log, columns=table1_columns(copy), cpu_seconds=result.cpu_seconds,
                          mean_load=result.mean_load, cores=os.cpu_count() or 0)
    summary = {"ok": ok, "seconds": seconds, "phases": phases, "peak_rss_bytes": result.peak_rss,
               "largest_process_rss_bytes": largest, "source": source, "overrides": hydra,
               "sizes": asdict(sizes), "full_resolution": list(FULL_RES), "archives": info, "report": str(report),
               "problems": problems, "stages": [asdict(s) for s in result.stages], "skipped": result.skipped,
               "cpu_count": os.cpu_count(), "cpu_seconds": result.cpu_seconds, "mean_load": result.mean_load,
               "keep_freed_memory": args.keep_freed_memory}
    write_json(folder / "summary.json", summary)
    print("\n".join(lines), flush=True)
    return 0 if ok else 1
