"""Resume: which pairs a rerun may skip, from the batch's own record in each pair's folder.

Why a record of our own (``batch_record.json``) and not the run's report: the decision must not
depend on the report's schema, and it needs what the report does not hold: the checksums of every
input and the manifest options as the batch passed them. A pair is skipped only when its record
says ok, its report agrees, and the inputs' checksums and options are the same as now.

Rules (``decide``), for a pair whose folder OUT/<id> exists:
- same inputs and options, finished ok: skipped;
- same inputs and options, failed or refused earlier: its earlier outcome is reported again
  (registration is deterministic, so rerunning would only repeat it) unless ``--overwrite-failed``;
- inputs or options changed since a failed run: run again, replacing the failed folder;
- inputs or options changed since an ok run, or a folder the batch did not write: left alone and
  reported as failed, unless ``--overwrite`` (results are never replaced silently).

Example:
    >>> decide(job, Path("out/knee01"), digests, overwrite_failed=False, overwrite=False).action
    'skip'
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from .manifest import PairJob
from .outcome import PairOutcome, linkable_files, read_json, report_figures, report_passed

RECORD_NAME = "batch_record.json"
RECORD_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """``action`` is run, skip, keep (report the earlier failure again) or conflict; ``reason`` says why."""

    action: str
    reason: str = ""


def build_record(job: PairJob, digests: Dict[str, Dict[str, Any]], outcome: PairOutcome,
                 command: list) -> Dict[str, Any]:
    """The record written into a finished pair's folder (whatever its outcome)."""
    from .. import __version__

    return {
        "batch_record_version": RECORD_VERSION, "id": job.pair_id, "status": outcome.status,
        "message": outcome.message, "options": job.options_key(), "inputs": digests,
        "seconds": outcome.seconds, "cpu_s": outcome.cpu_s, "peak_rss_mb": outcome.peak_rss_mb,
        "command": command, "software_version": __version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _same_inputs(record: Dict[str, Any], digests: Dict[str, Dict[str, Any]]) -> bool:
    recorded = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    return {k: (v or {}).get("sha256") for k, v in recorded.items()} == {k: v["sha256"] for k, v in digests.items()}


def decide(job: PairJob, folder: Path, digests: Dict[str, Dict[str, Any]], overwrite_failed: bool,
           overwrite: bool) -> Decision:
    """What to do with ``job`` given its existing output ``folder`` (see the module's rules)."""
    if not folder.exists():
        return Decision("run")
    record = read_json(folder / RECORD_NAME)
    if record is None:
        return Decision("run", "--overwrite") if overwrite else Decision(
            "conflict", f"'{folder}' exists but was not written by a batch run; move it away or pass --overwrite")
    same = record.get("options") == job.options_key() and _same_inputs(record, digests)
    recorded_ok = record.get("status") == "ok"
    report = read_json(folder / "report.json")
    if same and recorded_ok:
        if report is not None and report_passed(report, folder):
            return Decision("skip")
        return Decision("run", "its earlier result is incomplete")
    if same:
        return Decision("run", "--overwrite-failed") if overwrite_failed else Decision(
            "keep", "from an earlier run; pass --overwrite-failed to run it again")
    if recorded_ok and not overwrite:
        return Decision("conflict", f"'{folder}' holds a result of other inputs or options; move it away or "
                                    "pass --overwrite to replace it")
    return Decision("run", "inputs or options changed")


def recorded_outcome(job: PairJob, folder: Path, status: Optional[str] = None, note: str = "") -> PairOutcome:
    """The outcome of an earlier run, from its record and report (``status`` overrides the recorded one)."""
    record = read_json(folder / RECORD_NAME) or {}
    figures = report_figures(read_json(folder / "report.json"))
    message = str(record.get("message") or "; ".join(figures["warnings"]))
    if note:
        message = f"{message} ({note})" if message else note
    return PairOutcome(
        job.pair_id, job.folder, status or str(record.get("status", "failed-other")), message,
        record.get("seconds"), record.get("cpu_s"), record.get("peak_rss_mb") or figures["peak_rss_mb"],
        figures["confidence"], figures["metric_after"], (folder / "qc.png").is_file(), linkable_files(folder))
