"""The batch's verdict: ``summary.csv``, the count of each outcome, and the exit code.

Why: after a night's run the first questions are "did everything work?" (the exit code: 0 only when
every pair succeeded), "what failed, and why?" (the counts and each failure's message) and "which
results need a look?" (confidence, metric and warnings per pair, in a file a spreadsheet opens).

Example:
    >>> write_summary_csv(Path("out"), outcomes)
    >>> format_counts(count_outcomes(outcomes))
    '8 ok, 1 skipped, 0 refused, 1 failed-input, 0 failed-other'
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path
from typing import Dict, List

from .outcome import STATUSES, PairOutcome

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ("id", "status", "confidence", "error_or_warning", "metric_after", "seconds", "peak_rss_mb",
                   "cpu_s", "output_folder")
#: Exit code of a batch that ran but where at least one pair failed, was refused or conflicted.
PAIRS_FAILED_EXIT = 5
#: Exit code of an interrupted batch (Ctrl-C, SIGTERM), as for ``register``.
INTERRUPTED_EXIT = 130


def write_text_replacing(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (readers never see half).
    The file is created with ``open(..., "x")`` so the umask applies (``mkstemp`` would make it private)."""
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_rows(outcomes: List[PairOutcome]) -> List[List[str]]:
    """The CSV rows (without the header), in manifest order."""
    return [[o.pair_id, o.status, _cell(o.confidence), " ".join(o.message.split()), _cell(o.metric_after),
             _cell(o.seconds), _cell(o.peak_rss_mb), _cell(o.cpu_s), o.folder] for o in outcomes]


def write_summary_csv(output_dir: Path, outcomes: List[PairOutcome]) -> Path:
    """``OUT/summary.csv``: one row per pair; ``output_folder`` is relative to OUT."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    writer.writerows(summary_rows(outcomes))
    return write_text_replacing(output_dir / SUMMARY_NAME, buffer.getvalue())


def count_outcomes(outcomes: List[PairOutcome]) -> Dict[str, int]:
    """Pairs per status, every status listed (zero included) so scripts can rely on the keys."""
    counts = {status: 0 for status in STATUSES}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def format_counts(counts: Dict[str, int]) -> str:
    """``3 ok, 1 skipped, ...``; interrupted only when there are some."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if status != "interrupted" or n)


def exit_code(outcomes: List[PairOutcome]) -> int:
    """0 when every pair succeeded (ok or skipped), 130 when interrupted, else ``PAIRS_FAILED_EXIT``."""
    if any(o.status == "interrupted" for o in outcomes):
        return INTERRUPTED_EXIT
    return 0 if all(o.succeeded for o in outcomes) else PAIRS_FAILED_EXIT
