"""The errors we raise on purpose: a problem with the user's input or environment, told in one line.

``blurdm-bench`` (:func:`pipelines.cli.main`) prints a :class:`UserError` as one line,
``blurdm-bench <command>: error: <message>``, and exits with its :attr:`~UserError.exit_code`; any other
exception keeps its traceback, so a bug (ours, or one inside torch) never looks like a user's mistake.

Raise a :class:`UserError` (or one of the classes below) where the cause is outside the code: a params
value, a command-line argument, a file that is missing, unreadable, unsafe or of the wrong kind, a disk
that is full. The message names the key, flag or file and, where it helps, what to do.
"""
from __future__ import annotations


class UserError(Exception):
    """An error caused by bad input: printed as one clear line, exit code 2, no traceback."""

    exit_code = 2


class InvalidInputError(UserError, ValueError):
    """A value the user gave (params, flags, file contents) is not valid; also a :class:`ValueError`,
    for callers and tests that catch that."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or a stage needs) does not exist."""


class NotWritableError(UserError, OSError):
    """The destination cannot be written: disk full, quota exhausted, read-only or no permission
    (``OSError(errno, message, path)``); exit code 1, as the command's inputs were fine."""

    exit_code = 1


class ParamsError(InvalidInputError):
    """params.yaml (or its sources in pipelines/conf) is missing, unreadable or invalid (message names the file and
    the key)."""
