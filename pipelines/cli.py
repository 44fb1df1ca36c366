"""``blurdm-bench`` command line: one subcommand per pipeline entry point.

Each subcommand lives in its own module at the root of ``pipelines/`` (the stage commands; the library they
call is in the packages beside them) and exposes two functions:
``configure_parser(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int``.
Modules are imported only when their subcommand is used, so ``blurdm-bench --help`` is instant.

Errors: a :class:`pipelines.core.errors.UserError` (bad input, raised on purpose, the message names the key,
flag or file) is printed as one line, ``blurdm-bench <command>: error: <message>``, with its exit code (2; 1
when the disk cannot be written); Ctrl-C exits with 130; every other exception keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipelines.core.environment import set_offline_env
from pipelines.core.errors import UserError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("pipelines.synth", "generate the embedded synthetic motion-blur dataset"),
    "fetch": ("pipelines.fetch", "download, verify and unpack a real dataset"),
    "realcrops": ("pipelines.realcrops", "cut the committed real GoPro test crops from shared/realdata"),
    "train": ("pipelines.train", "run one training job (stage x backbone x prior x variant)"),
    "evaluate": ("pipelines.evaluate", "score a trained model on a test set"),
    "profile": ("pipelines.profile", "parameters, MACs, FLOPs and latency of every model"),
    "gpu-check": ("pipelines.gpu_check", "paper-scale training bursts and eager / CUDA-graph latency on this GPU"),
    "report": ("reports.build", "render the HTML report"),
    "import-weights": ("pipelines.import_weights", "a published official checkpoint as our model file"),
    "deblur": ("pipelines.deblur", "restore your own photos with a trained checkpoint"),
    "study": ("pipelines.study", "run one DVC stage of the study (all seeds of the active profile)"),
    "tables": ("pipelines.tables", "gather evaluations into the metric tables (metrics/*.json)"),
    "check": ("pipelines.check", "compare metric tables against a committed reference"),
    "migrate-lock": ("pipelines.migrate_lock", "carry a finished study over to Table 1's training sets, no retraining"),
    "params": ("pipelines.params", "the resolved parameters of a profile: print, write params.yaml, check"),
    "ui": ("pipelines.ui", "open the MLflow UI on the study's tracking store (127.0.0.1 only)"),
    "rehearse": ("pipelines.rehearse", "the paper profile end to end on miniature archives served on 127.0.0.1"),
}


def main(argv: list[str] | None = None) -> int:
    set_offline_env()
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="blurdm-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in SUBCOMMANDS:
        parser.print_usage(sys.stderr)
        print(f"blurdm-bench: error: unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    name = argv[0]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)  # lazy by design: only the command asked for is imported
    cmd_parser = argparse.ArgumentParser(prog=f"blurdm-bench {name}", description=help_text)
    module.configure_parser(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UserError as err:
        # Raised on purpose (bad input, a full disk): a clear message naming the file / key, no stack trace.
        print(f"blurdm-bench {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"blurdm-bench {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())  # `python -m pipelines.cli` (e.g. under torchrun)
