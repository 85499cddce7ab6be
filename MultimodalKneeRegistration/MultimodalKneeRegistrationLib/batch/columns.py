"""Manifest columns <-> ``register`` options, read from the real ``register`` parser.

Why: a manifest column is a ``register`` option for one pair, so the list of allowed columns must
be the command line's own: a hand copy would drift the day an option is added. The batch owns the
output folder and the log level, so those options are not columns.

Example:
    >>> columns = register_columns()
    >>> columns["init_mode"].flag
    '--init-mode'
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: Required columns: the pair's name and its two images (``register``'s positionals).
REQUIRED = ("id", "fixed", "moving")
#: Columns holding paths: resolved against the manifest's folder and checksummed for resume.
PATH_COLUMNS = ("fixed", "moving", "initial_transform", "segmentation")
#: ``register`` options the batch sets itself (one output folder per pair, its own progress).
BATCH_OWNED = ("help", "output_dir", "overwrite", "quiet", "debug")
_TRUE = ("1", "true", "yes", "y", "on", "x")
_FALSE = ("", "0", "false", "no", "n", "off")


@dataclass(frozen=True)
class Column:
    """One optional manifest column: the ``register`` flag it sets and whether it takes a value."""

    name: str
    flag: str
    takes_value: bool


def register_parser() -> argparse.ArgumentParser:
    """The ``register`` sub-command's parser from ``cli.build_parser()`` (imported late: cli imports us)."""
    from ..cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["register"]
    raise RuntimeError("the knee-register parser has no 'register' command")


def column_name(header: str) -> str:
    """A header as a column name: ``--Init-Mode`` -> ``init_mode`` (case, dashes and spaces ignored)."""
    return header.strip().lstrip("-").strip().lower().replace("-", "_").replace(" ", "_")


def register_columns(parser: Optional[argparse.ArgumentParser] = None) -> Dict[str, Column]:
    """Every ``register`` option a manifest may set, by column name (the long flag in snake case)."""
    parser = parser or register_parser()
    columns: Dict[str, Column] = {}
    for action in parser._actions:
        long_flags = [s for s in action.option_strings if s.startswith("--")]
        if not long_flags or action.dest in BATCH_OWNED:
            continue
        flag = max(long_flags, key=len)
        columns[column_name(flag)] = Column(column_name(flag), flag, action.nargs != 0)
    return columns


def allowed_columns(columns: Dict[str, Column]) -> List[str]:
    """Required columns first, then the options in the parser's order."""
    return list(REQUIRED) + [name for name in columns if name not in REQUIRED]


def switch_value(text: str) -> Optional[bool]:
    """A yes/no cell (``x``, ``yes``, ``1``, ``true`` / empty, ``no``, ``0``); None when it is neither."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    return False if lowered in _FALSE else None


def option_arguments(settings: Tuple[Tuple[str, str], ...], columns: Dict[str, Column]) -> List[str]:
    """``register`` arguments for ``(column, value)`` pairs: ``--flag=value``, or ``--flag`` for a switch.

    ``--flag=value`` keeps a value that starts with a dash (a negative seed, a path) a value.
    """
    arguments = []
    for name, value in settings:
        column = columns[name]
        if column.takes_value:
            arguments.append(f"{column.flag}={value}")
        elif switch_value(value):
            arguments.append(column.flag)
    return arguments
