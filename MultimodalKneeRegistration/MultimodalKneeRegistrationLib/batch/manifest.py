"""The cohort manifest: one CSV row per pair, checked completely before any registration starts.

Why: on a cohort, a typo found after three hours (a missing file on row 212, two rows writing the
same folder) costs the night. Every row is therefore checked up front, each cell by its ``register``
option's own type and choices, the settings columns turned into a ``RegistrationSettings`` (the
command line's own ``cli_options.settings_from_options``) that must survive ``from_dict``, and every
problem is reported in ONE message. A pair's process gets those settings as a file
(``--settings-from``), so it runs exactly what was checked; the other options stay flags.

Columns: ``id``, ``fixed``, ``moving``; optionally any ``register`` option named after its flag
(``initial_transform``, ``segmentation``, ``per_bone``, ``preset``, ``init_mode``, ...). Relative
paths are relative to the manifest's folder. A pair id may hold any text; its output folder is a
safe version of it, and two ids that give the same folder are refused.

Example:
    >>> jobs = read_manifest("cohort.csv")
    >>> jobs[0].register_argv("out/.knee01.partial")[:5]
    ['register', '/data/knee01/CT.nrrd', '/data/knee01/MR', '--output-dir=out/.knee01.partial',
     '--settings-from=out/.knee01.partial/batch_settings.json']
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from ..cli_options import settings_from_options
from ..errors import InputError
from ..settings import RegistrationSettings
from .columns import PATH_COLUMNS, REQUIRED, Column, allowed_columns, column_name, option_arguments, register_columns

#: Folder names the batch writes itself, and names Windows cannot hold.
RESERVED = {"index.html", "summary.csv", ".batch.lock", "con", "prn", "aux", "nul"}
#: The pair's settings, written into its folder for its process (``--settings-from``) and kept there.
SETTINGS_NAME = "batch_settings.json"
MAX_LISTED_PROBLEMS = 12


@dataclass(frozen=True)
class PairJob:
    """One pair to register: where its inputs are and which ``register`` options it takes."""

    pair_id: str
    folder: str
    row: int
    #: (column, absolute path) for fixed, moving and any path option, in manifest order.
    inputs: Tuple[Tuple[str, str], ...]
    #: (column, value) for the other options, as written in the manifest; switches hold "true".
    cells: Tuple[Tuple[str, str], ...]
    #: ``register`` options that are not settings (not FIXED, MOVING or --output-dir), e.g. ``("--per-bone",)``.
    arguments: Tuple[str, ...]
    #: The pair's ``RegistrationSettings`` as ``to_dict``'s JSON (the row's settings columns applied).
    settings_json: str = ""

    @property
    def settings(self) -> RegistrationSettings:
        return RegistrationSettings.from_dict(json.loads(self.settings_json))

    def write_settings(self, folder: Union[str, Path]) -> Path:
        """Write the pair's settings file into ``folder`` (before its process starts); return its path."""
        path = Path(folder) / SETTINGS_NAME
        path.write_text(self.settings_json, encoding="utf-8")
        return path

    def register_argv(self, output_dir: Union[str, Path]) -> List[str]:
        """The ``register`` command line of this pair, writing into ``output_dir`` (which holds its settings)."""
        paths = dict(self.inputs)
        return ["register", paths["fixed"], paths["moving"], f"--output-dir={output_dir}",
                f"--settings-from={Path(output_dir) / SETTINGS_NAME}", *self.arguments]

    def options_key(self) -> Dict[str, str]:
        """The options as recorded for resume: the cells as written, with path options standing for their
        checksums (not the settings they give: a record then means the same across versions)."""
        key = dict(self.cells)
        key.update({name: "(file, see checksums)" for name, _ in self.inputs if name not in REQUIRED})
        return key


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


def _row_job(line: int, cells: Dict[str, str], columns: Dict[str, Column], base: Path) -> Tuple[PairJob, List[str]]:
    """The job of one row and the problems found in it (empty cells leave the option at its default)."""
    pair_id = cells.get("id", "")
    problems = [] if pair_id else ["no id"]
    inputs, written, values = [], [], {}
    for name, value in cells.items():
        if name == "id" or (not value and name not in REQUIRED):
            continue
        if name in PATH_COLUMNS:
            path = _resolve(value, base) if value else ""
            problems.append(_path_problem(name, path) if value else f"no {name} image")
            inputs.append((name, path))
            continue
        try:
            values[name] = columns[name].value(value)
        except ValueError as error:
            problems.append(str(error))
            continue
        if values[name] is None:
            problems.append(f"{name} is {value!r}; write yes or no")
        elif values[name] is not False:
            written.append((name, value if columns[name].takes_value else "true"))
    runs = tuple(i for i in inputs if i[0] not in REQUIRED) + tuple(c for c in written if not columns[c[0]].is_setting)
    job = PairJob(pair_id, safe_folder_name(pair_id), line, tuple(inputs), tuple(written),
                  tuple(option_arguments(runs, columns)))
    if not any(problems):
        settings_json, problem = _settings_of(values, columns)
        job = PairJob(job.pair_id, job.folder, job.row, job.inputs, job.cells, job.arguments, settings_json)
        problems.append(problem)
    return job, [f"row {line}: {p}" for p in problems if p]


def _settings_of(values: Dict[str, Any], columns: Dict[str, Column]) -> Tuple[str, str]:
    """(the row's settings as JSON, '') or ('', what is wrong with them): the settings columns through
    the command line's own ``settings_from_options``, checked to come back whole from ``from_dict``."""
    try:
        settings = settings_from_options({k: v for k, v in values.items() if columns[k].is_setting})
        data = settings.to_dict()
        if RegistrationSettings.from_dict(data) != settings:
            return "", "its settings do not survive a round trip through their JSON (a bug: report it)"
    except InputError as error:
        return "", error.what
    return json.dumps(data, indent=1, sort_keys=True), ""


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
        names = [column_name(h) for h in header]
        for line, cells in rows:
            if len(cells) > len(names):
                problems.append(f"row {line}: {len(cells)} cells for {len(names)} columns (a comma inside a "
                                "value needs \"quotes\")")
                continue
            job, row_problems = _row_job(line, dict(zip(names, cells + [""] * len(names))), columns, path.parent)
            problems += row_problems
            jobs.append(job)
        problems += _collisions(jobs)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise InputError(f"manifest '{path}' cannot be used: {listed}" + (f"; and {more} more" if more > 0 else ""),
                         "fix the manifest and run again (nothing was registered)")
    return jobs
