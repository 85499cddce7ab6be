"""Manifest columns <-> ``register`` options, read from the real ``register`` parser's options.

Why: a manifest column is a ``register`` option for one pair, so the list of allowed columns must
be the command line's own: a hand copy would drift the day an option is added. The batch owns the
output folder and the log level, so those options are not columns. A cell is read by its option's
own type and choices (``Column.value``); the columns that set registration settings are those of
``cli_options.SETTINGS_OPTIONS`` (and ``preset``, ``settings_from``), turned into settings there.

Example:
    >>> columns = register_columns()
    >>> columns["init_mode"].flag
    '--init-mode'
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..cli_options import SETTINGS_OPTIONS, register_parser

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
    #: The option's conversion of its text (argparse ``type``; None: the text) and its allowed values.
    kind: Optional[Callable[[str], Any]] = None
    choices: Optional[Tuple[Any, ...]] = None

    @property
    def is_setting(self) -> bool:
        """True for the columns that set registration settings (handed to the pair as its settings)."""
        return self.name in SETTINGS_OPTIONS or self.name in ("preset", "settings_from")

    def value(self, text: str) -> Any:
        """The cell as the option's value; ``ValueError`` in the parser's words when it is not one."""
        if not self.takes_value:
            return switch_value(text)
        try:
            value = self.kind(text) if self.kind is not None else text
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"argument {self.flag}: {error}") from None
        except (TypeError, ValueError):
            raise ValueError(f"argument {self.flag}: invalid {getattr(self.kind, '__name__', 'value')} value: "
                             f"{text!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"argument {self.flag}: invalid choice: {value!r} (choose from "
                             f"{', '.join(map(repr, self.choices))})")
        return value


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
        choices = tuple(action.choices) if action.choices is not None else None
        columns[column_name(flag)] = Column(column_name(flag), flag, action.nargs != 0, action.type, choices)
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
