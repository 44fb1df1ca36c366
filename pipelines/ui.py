"""``blurdm-bench ui``: the MLflow UI on the study's tracking store, reachable from this machine only.

Usage::

    blurdm-bench ui                          # mlflow ui --backend-store-uri <store> --host 127.0.0.1 --port 5000
    blurdm-bench ui --port 5001 --dry-run    # print the command, start nothing
    blurdm-bench ui --host 0.0.0.0 --expose  # other machines too (no authentication: a warning is printed)

The store is the one training writes to (:func:`pipelines.tracking.store.default_tracking_uri`:
``$MLFLOW_TRACKING_URI``, else ``mlflow_tracking_uri`` in params, else ``<repo>/mlflow.db``). The MLflow
UI has no authentication and can delete runs, so it binds to the loopback interface; any other
``--host`` is refused unless ``--expose`` is given. The command is run as an argument list (no shell),
so nothing in the store URI or host is ever interpreted by a shell; the process then
becomes the server (``exec``), so stopping it stops MLflow and its workers.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from pipelines.core.config import load_params
from pipelines.tracking.store import default_tracking_uri
from pipelines.tracking.ui_server import DEFAULT_PORT, LOOPBACK, is_loopback, ui_command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None,
                        help="tracking store URI (default: the one training uses, e.g. sqlite:///<repo>/mlflow.db)")
    parser.add_argument("--host", default=LOOPBACK,
                        help=f"interface to bind (default {LOOPBACK}; any other needs --expose)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--expose", action="store_true",
                        help="allow a non-loopback --host (anyone who can reach it can read and delete runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    parser.add_argument("--params", default=None, help="params file (default: the repo's params.yaml)")


def run(args) -> int:
    store = args.store or default_tracking_uri(load_params(args.params).mlflow_tracking_uri)
    argv = ui_command(store, args.host, args.port, args.expose)
    if not is_loopback(args.host):
        print(f"blurdm-bench ui: WARNING: serving on {args.host}:{args.port}; the MLflow UI has no authentication, "
              "anyone who can reach this address can read and delete runs", file=sys.stderr)
    print(shlex.join(argv), flush=True)
    if args.dry_run:
        return 0
    sys.stderr.flush()
    # Become the server (no child process): Ctrl-C and SIGTERM reach MLflow itself, which stops its
    # workers; a parent killed by SIGTERM would leave an orphaned server listening.
    os.execv(argv[0], argv)
    return 0  # not reached
