"""``blurdm-bench params``: the resolved parameters of a profile, as ``dvc exp run -S profile=NAME`` composes them.

``params.yaml`` is composed by Hydra from ``pipelines/conf/`` (the base ``config.yaml`` and one file per
profile in ``profile/``) whenever ``dvc exp run`` runs. This command shows that composition and checks it:

    blurdm-bench params --profile paper                 # print the resolved paper profile (validated)
    blurdm-bench params --profile paper --write         # write it to params.yaml (then `dvc repro` runs it)
    blurdm-bench params --profile cpu -S train.lr=3e-3  # with Hydra overrides, as `dvc exp run -S`
    blurdm-bench params --check                          # params.yaml is what pipelines/conf composes (exit 1 if not)
"""
from __future__ import annotations

import argparse
import difflib

from pipelines.core.config import compose, params_path, read_params_file, validate
from pipelines.core.files import write_text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None,
                        help="profile to compose (smoke, cpu, paper; default: the one params.yaml was composed for)")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override, as `dvc exp run -S` takes it (repeatable)")
    parser.add_argument("--write", action="store_true", help="write the result to params.yaml")
    parser.add_argument("--check", action="store_true",
                        help="compare params.yaml with the composition of its profile; exit 1 when they differ")
    parser.add_argument("--params", default=None, help="params file to write or check (default: the repo's params.yaml)")


def dump(params: dict) -> str:
    """The YAML text DVC writes for a composed params.yaml (OmegaConf's dump, key order kept)."""
    from omegaconf import OmegaConf  # comes with dvc's hydra-core

    return OmegaConf.to_yaml(OmegaConf.create(params))


def run(args) -> int:
    path = params_path(args.params)
    profile = args.profile
    if profile is None:
        profile = read_params_file(path).get("profile") if path.is_file() else "cpu"
    composed = compose(profile, args.overrides)
    validate(composed, source=f"pipelines/conf (profile {profile})")  # refuse an invalid composition before writing
    text = dump(composed)
    if args.check:
        current = read_params_file(path)
        if current == composed:
            print(f"{path}: the composition of profile {profile!r} (pipelines/conf)")
            return 0
        diff = difflib.unified_diff(dump(current).splitlines(), text.splitlines(), str(path),
                                    f"pipelines/conf (profile {profile})", lineterm="")
        print("\n".join(diff))
        print(f"\n{path} differs from the composition of profile {profile!r}: edit pipelines/conf/ and run "
              f"`blurdm-bench params --profile {profile} --write` (or `dvc exp run -S profile={profile}`)")
        return 1
    if args.write:
        write_text(path, text)
        print(f"wrote {path} (profile {profile})")
        return 0
    print(text, end="")
    return 0
