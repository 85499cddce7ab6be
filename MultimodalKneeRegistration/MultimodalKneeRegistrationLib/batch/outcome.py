"""What happened to one pair, and the figures read back from its ``report.json``.

Why a separate, plain dataclass: the outcome travels back from a Dask worker (it must pickle), and
the summary, the page and the progress bar all read the same fields. ``report.json`` is read
defensively (format 1 and 2), so the batch works before and after the report's schema changes.

Example:
    >>> outcome = PairOutcome("knee01", "knee01", "ok", seconds=41.2)
    >>> outcome.succeeded
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

#: Every status a pair can end with, in the order counts are printed.
STATUSES = ("ok", "skipped", "refused", "failed-input", "failed-other", "interrupted")
#: ``register`` exit code -> status (anything else, or a signal, is "failed-other").
STATUS_OF_EXIT = {0: "ok", 2: "failed-input", 4: "refused", 130: "interrupted"}


@dataclass
class PairOutcome:
    """One pair's result as the summary shows it (numbers None when unknown)."""

    pair_id: str
    folder: str
    status: str
    message: str = ""
    seconds: Optional[float] = None
    cpu_s: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    confidence: Optional[float] = None
    metric_after: Optional[float] = None
    has_qc: bool = False
    #: Names of the files in the pair's folder worth linking (report.json, batch_log.txt).
    files: Tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "skipped")


def linkable_files(folder: Path) -> Tuple[str, ...]:
    """The report and the log, where the pair's folder has them."""
    return tuple(name for name in ("report.json", "batch_log.txt") if (folder / name).is_file())


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``, or None when it is absent or unreadable (a damaged earlier run)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_passed(report: Dict[str, Any], folder: Path) -> bool:
    """Whether a report describes a finished, accepted result (format 2 ``status``, else format 1)."""
    if "status" in report:
        return report["status"] == "ok"
    return bool(report.get("passed_sanity_checks")) and (folder / "transform.tfm").is_file()


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def report_figures(report: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """confidence, metric_after, peak_rss_mb and warnings from a report of format 1 or 2."""
    report = report or {}
    verdict = report.get("verdict") if isinstance(report.get("verdict"), dict) else {}
    result = report.get("result") if isinstance(report.get("result"), dict) else {}
    metric = result.get("metric") if isinstance(result.get("metric"), dict) else {}
    resources = report.get("resources") if isinstance(report.get("resources"), dict) else {}
    warnings: List[str] = []
    if verdict and not verdict.get("passed", True):
        warnings += [str(f) for f in verdict.get("failures") or []]
    elif not verdict and report.get("passed_sanity_checks") is False:
        warnings.append("the result failed its sanity checks")
    warnings += [str(w) for w in result.get("warnings") or []]
    return {"confidence": _number(verdict.get("confidence")), "metric_after": _number(metric.get("after")),
            "peak_rss_mb": _number(resources.get("peak_rss_mb")), "warnings": warnings}
