"""``blurdm-bench fetch``: download, verify, unpack and normalise a real deblurring dataset.

Datasets (``params.yaml`` ``fetch.datasets``): ``gopro``, ``hide``, ``realblur_j``, ``realblur_r``.
``blurdm-bench fetch gopro`` fetches one; ``blurdm-bench fetch --all`` fetches the datasets in the
active profile's ``fetch.active`` (the ``paper`` profile: gopro, hide); ``--if-active`` (the DVC stage)
writes ``OUT/NOT_FETCHED.txt`` for a dataset that is not (replacing only a folder fetch wrote: such a
placeholder, or a fetched dataset's ``manifest.json``; any other non-empty folder is refused). Each dataset is
:func:`pipelines.data.fetching.dataset.fetch_dataset` (the steps, the output and its manifest: see there).

Manual downloads: the RealBlur project page links a sharing page and a Google Drive *folder*, neither
a direct link to the file (``manual: true`` in params). Download ``RealBlur.tar.gz`` from
http://cg.postech.ac.kr/research/realblur/ and run
``blurdm-bench fetch realblur_j --archive RealBlur.tar.gz --record-checksum`` (then the same for
``realblur_r``, verified against the value just recorded). The same ``--archive`` route works for
GoPro and HIDE behind a firewall.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.core.config import PROFILE_NAMES, load_params
from pipelines.core.errors import UserError
from pipelines.core.files import atomic_dir
from pipelines.core.params_view import restrict
from pipelines.data.fetching.dataset import fetch_dataset
from pipelines.data.fetching.verify import CHECKSUMS_PATH


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Archives are verified against pipelines/checksums.yaml; a null entry needs "
                     "--record-checksum\n(record it on first use) or --trust-unverified (use it, record nothing)."
                     "\nRealBlur (Google Drive): download RealBlur.tar.gz from "
                     "http://cg.postech.ac.kr/research/realblur/\nand run `blurdm-bench fetch realblur_j "
                     "--archive RealBlur.tar.gz`.")
    parser.add_argument("dataset", nargs="?", help="a dataset of params fetch.datasets (gopro, hide, realblur_j, realblur_r)")
    parser.add_argument("--all", action="store_true", help="fetch every dataset in the profile's fetch.active")
    parser.add_argument("--archive", type=Path, help="an archive you downloaded yourself (verified like a download)")
    parser.add_argument("--source", type=Path, help="an already-unpacked copy (needs --trust-unverified)")
    parser.add_argument("--out", type=Path, help="output folder (default: the dataset's out_dir in params)")
    parser.add_argument("--trust-unverified", action="store_true",
                        help="accept an archive whose sha256 is unknown (null) or an unpacked --source")
    parser.add_argument("--record-checksum", action="store_true",
                        help="where the archive's sha256 is unknown (null): accept it and, once the fetch has "
                             "succeeded (pair counts checked), write its sha256 into the checksums file")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="network timeout in seconds (default 60): a connection silent this long, or "
                             "bringing under 1 KiB/s over this long, is dropped")
    parser.add_argument("--retries", type=int, default=3,
                        help="resume a cut download this many times per URL (default 3; a partial download is "
                             "also kept for the next run)")
    parser.add_argument("--if-active", action="store_true",
                        help="DVC stage mode: fetch only when the dataset is in the profile's fetch.active; "
                             "otherwise write OUT/NOT_FETCHED.txt saying why")
    parser.add_argument("--params", type=Path, help="params file (default: the repo's params.yaml)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="profile to use (default: params' profile)")
    parser.add_argument("--checksums", type=Path,
                        help=f"checksums file (default: params fetch.checksums_file, else {CHECKSUMS_PATH.name} in "
                             f"pipelines/)")


PARAMS_KEYS = ("profile", "fetch", "data.max_pixels")  # what this stage reads (dvc.yaml declares them)
NOT_FETCHED = "NOT_FETCHED.txt"  # the placeholder of a dataset outside fetch.active (--if-active)
# what marks a folder fetch wrote (marker file -> words it holds): --if-active replaces no other folder
FETCH_MARKERS = {NOT_FETCHED: b"not in fetch.active", "manifest.json": b'"source_kind"'}


def run(args: argparse.Namespace) -> int:
    params = restrict(load_params(args.params, profile=args.profile), PARAMS_KEYS, "the fetch stage")
    datasets = params.fetch.datasets
    if bool(args.all) == bool(args.dataset):
        raise UserError("name one dataset or pass --all (not both)")
    if args.all:
        if args.archive or args.source or args.out:
            raise UserError("--archive, --source and --out need one named dataset, not --all")
        names = list(params.fetch.active)
        if not names:
            raise UserError(f"fetch.active is empty in profile {params.profile!r}: name a dataset "
                            f"(blurdm-bench fetch gopro) or use --profile paper")
    else:
        names = [args.dataset]
    for name in names:
        if name not in datasets:
            allowed = ", ".join(sorted(datasets)) or "(none configured in params fetch.datasets)"
            raise UserError(f"unknown dataset {name!r}; allowed: {allowed}")
    checksums = args.checksums
    if checksums is None and params.fetch.checksums_file is not None:  # e.g. the rehearsal's miniature archives
        checksums = params.resolve_path(params.fetch.checksums_file)
    for name in names:
        spec = datasets[name]
        out_dir = args.out if args.out is not None else params.resolve_path(spec.out_dir)
        if getattr(args, "if_active", False) and name not in params.fetch.active:
            # only a folder fetch wrote is replaced: its placeholder, or a dataset it fetched
            with atomic_dir(out_dir, marker=FETCH_MARKERS) as tmp:
                (tmp / NOT_FETCHED).write_text(
                    f"{name} is not in fetch.active of profile {params.profile!r}: not downloaded.\n"
                    f"Use the paper profile (dvc exp run -S profile=paper) or add it to fetch.active.\n")
            print(f"{name}: not active in profile {params.profile!r}; skipped ({out_dir}/{NOT_FETCHED})")
            continue
        fetch_dataset(name, spec, out_dir, archive=args.archive, source=args.source,
                      trust_unverified=args.trust_unverified, record=args.record_checksum, force=args.force,
                      timeout=args.timeout, retries=args.retries,
                      checksums_path=checksums, max_unpacked_gb=params.fetch.max_unpacked_gb)
    return 0
