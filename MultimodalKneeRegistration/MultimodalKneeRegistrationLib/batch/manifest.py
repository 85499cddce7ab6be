"""The cohort manifest: one CSV row per pair, checked completely before any registration starts.

Why: on a cohort, a typo found after three hours (a missing file on row 212, two rows writing the
same folder) costs the night. Every row is therefore checked up front, with the real ``register``
parser and the real settings validation, and every problem is reported in ONE message.

Columns: ``id``, ``fixed``, ``moving``; optionally any ``register`` option named after its flag
(``initial_transform``, ``segmentation``, ``per_bone``, ``preset``, ``init_mode``, ...). Relative
paths are relative to the manifest's folder. A pair id may hold any text; its output folder is a
safe version of it, and two ids that give the same folder are refused.

Example:
    >>> jobs = read_manifest("cohort.csv")
    >>> jobs[0].register_argv("out/.knee01.partial")[:3]
    ['register', '/data/knee01/CT.nrrd', '/data/knee01/MR']
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

from ..errors import InputError
from .columns import (
    PATH_COLUMNS,
    REQUIRED,
    Column,
    allowed_columns,
    column_name,
    option_arguments,
    register_columns,
    register_parser,
    switch_value,
)

#: Folder names the batch writes itself, and names Windows cannot hold.
RESERVED = {"index.html", "summary.csv", ".batch.lock", "con", "prn", "aux", "nul"}
MAX_LISTED_PROBLEMS = 12


@dataclass(frozen=True)
class PairJob:
    """One pair to register: where its inputs are and which ``register`` options it takes."""

    pair_id: str
    folder: str
    row: int
    #: (column, absolute path) for fixed, moving and any path option, in manifest order.
    inputs: Tuple[Tuple[str, str], ...]
    #: (column, value) for the other options; switches hold "true".
    settings: Tuple[Tuple[str, str], ...]
    #: ``register`` options (not FIXED, MOVING or --output-dir), e.g. ``("--preset=fast-preview",)``.
    arguments: Tuple[str, ...]

    def register_argv(self, output_dir: Union[str, Path]) -> List[str]:
        """The ``register`` command line of this pair, writing into ``output_dir``."""
        paths = dict(self.inputs)
        return ["register", paths["fixed"], paths["moving"], f"--output-dir={output_dir}", *self.arguments]

    def options_key(self) -> Dict[str, str]:
        """The options as recorded for resume: values, with path options standing for their checksums."""
        key = dict(self.settings)
        key.update({name: "(file, see checksums)" for name, _ in self.inputs if name not in REQUIRED})
        return key


class _ParserError(Exception):
    pass


def _raise_parser_error(message: str) -> None:
    raise _ParserError(message)


def safe_folder_name(pair_id: str) -> str:
    """A folder name for ``pair_id``: letters (any script), digits, ``-``, ``_`` and ``.`` kept, the
    rest ``_``; no leading dot (hidden, ``..``), at most 100 characters.

    Example:
        >>> safe_folder_name("knee 07/left")
        'knee_07_left'
    """
    text = unicodedata.normalize("NFC", pair_id.strip())
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100].strip(".") or "pair"
    return name + "_" if name.lower() in RESERVED else name


def _read_rows(path: Path) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    """Header and non-empty rows (with their line numbers); UTF-8 (with or without BOM); the delimiter
    (comma, semicolon as Excel writes in many locales, or tab) is the header's most frequent one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"manifest '{path}' is not UTF-8 text",
                         "save it as 'CSV UTF-8' (Excel) or convert it to UTF-8") from None
    except OSError as error:
        raise InputError(f"cannot read manifest '{path}' ({error.strerror or error})",
                         "check the path of the manifest CSV") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",;\t", key=first.count)  # from the header's plain names: csv.Sniffer misreads quotes
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter if first.count(delimiter) else ",")
    rows = [(reader.line_num, [c.strip() for c in cells]) for cells in reader]
    rows = [(line, cells) for line, cells in rows if any(cells)]
    if not rows:
        raise InputError(f"manifest '{path}' is empty",
                         "write a header line 'id,fixed,moving' and one line per pair")
    return rows[0][1], rows[1:]


def _header_problems(header: List[str], columns: Dict[str, Column]) -> List[str]:
    names = [column_name(h) for h in header]
    allowed = allowed_columns(columns)
    problems = [f"the header has no '{name}' column" for name in REQUIRED if name not in names]
    unknown = [h for h, n in zip(header, names) if n not in allowed]
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"(allowed: {', '.join(allowed)})")
    repeated = sorted({h for h, n in zip(header, names) if names.count(n) > 1})
    if repeated:
        problems.append(f"columns given twice: {', '.join(map(repr, repeated))}")
    return problems


def _resolve(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return os.path.normpath(str(path if path.is_absolute() else base / path))


def _path_problem(name: str, path: str) -> str:
    """Why a path cell cannot be used ('' when it can): images may be folders (DICOM), the rest files."""
    if name in ("fixed", "moving"):
        return "" if os.path.exists(path) else f"{name} '{path}' does not exist"
    return "" if os.path.isfile(path) else f"{name} '{path}' is not a file"


def _row_job(line: int, cells: Dict[str, str], columns: Dict[str, Column], base: Path,
             parser: argparse.ArgumentParser) -> Tuple[PairJob, List[str]]:
    """The job of one row and the problems found in it (empty cells leave the option at its default)."""
    pair_id = cells.get("id", "")
    problems = [] if pair_id else ["no id"]
    inputs, settings = [], []
    for name, value in cells.items():
        if name == "id" or (not value and name not in REQUIRED):
            continue
        if name in PATH_COLUMNS:
            path = _resolve(value, base) if value else ""
            problems.append(_path_problem(name, path) if value else f"no {name} image")
            inputs.append((name, path))
        elif columns[name].takes_value:
            settings.append((name, value))
        elif switch_value(value) is None:
            problems.append(f"{name} is {value!r}; write yes or no")
        elif switch_value(value):
            settings.append((name, "true"))
    options = tuple(option_arguments(tuple(i for i in inputs if i[0] not in REQUIRED) + tuple(settings),
                                     columns))
    job = PairJob(pair_id, safe_folder_name(pair_id), line, tuple(inputs), tuple(settings), options)
    if not any(problems):
        problems.append(_option_problem(job, parser))
    return job, [f"row {line}: {p}" for p in problems if p]


def _option_problem(job: PairJob, parser: argparse.ArgumentParser) -> str:
    """What the real ``register`` parser and settings validation say about the row ('' if nothing)."""
    from ..cli import settings_from_args

    try:
        settings_from_args(parser.parse_args(job.register_argv("unused")[1:]))
    except _ParserError as error:
        return str(error)
    except InputError as error:
        return error.what
    return ""


def _collisions(jobs: List[PairJob]) -> List[str]:
    """Duplicate ids, and distinct ids that would write the same folder (case-blind file systems too)."""
    problems, by_id, by_folder = [], {}, {}
    for job in jobs:
        if job.pair_id in by_id:
            problems.append(f"row {job.row}: id {job.pair_id!r} is already used on row {by_id[job.pair_id].row}")
            continue
        by_id[job.pair_id] = job
        other = by_folder.setdefault(job.folder.casefold(), job)
        if other is not job:
            problems.append(f"row {job.row}: id {job.pair_id!r} would write the same folder '{job.folder}' as "
                            f"id {other.pair_id!r} on row {other.row} (ids become folder names with only "
                            "letters, digits, - _ and .)")
    return problems


def read_manifest(path: Union[str, Path]) -> List[PairJob]:
    """Read and check the manifest; raise ONE ``InputError`` listing every problem found.

    Example:
        >>> [job.pair_id for job in read_manifest("cohort.csv")]
        ['knee01', 'knee02']
    """
    path = Path(path).expanduser().absolute()
    header, rows = _read_rows(path)
    columns = register_columns()
    problems = _header_problems(header, columns)
    if not problems and not rows:
        problems.append("it lists no pairs (only a header)")
    jobs: List[PairJob] = []
    if not problems:
        parser = register_parser()
        parser.error = _raise_parser_error  # the real parser, telling us instead of exiting
        names = [column_name(h) for h in header]
        for line, cells in rows:
            if len(cells) > len(names):
                problems.append(f"row {line}: {len(cells)} cells for {len(names)} columns (a comma inside a "
                                "value needs \"quotes\")")
                continue
            job, row_problems = _row_job(line, dict(zip(names, cells + [""] * len(names))), columns,
                                         path.parent, parser)
            problems += row_problems
            jobs.append(job)
        problems += _collisions(jobs)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise InputError(f"manifest '{path}' cannot be used: {listed}" + (f"; and {more} more" if more > 0 else ""),
                         "fix the manifest and run again (nothing was registered)")
    return jobs
