"""The run report: what went in, what was decided, what came out, the verdict, and with which software.

Why: a registration someone has to trust later (in a paper, in a clinic) must be reproducible from
its record: the inputs, the plan, every stage's stop condition, the sanity checks, and the exact
versions. ``report.json`` is that record, one schema for every front end (``register``, ``demo``,
batch, Slicer); it is written even when the result is refused, so the user can see why.

Schema (version 2), top-level keys, always present (``REPORT_KEYS``):
``report_format_version``, ``kind`` ("register" or "demo"), ``status`` ("ok" or "refused"),
``created``, ``command``, ``software``, ``host``, ``inputs``, ``inspection``, ``plan``, ``result``
(transform, metric before/after, stages, timings, warnings; null when no result exists),
``verdict`` (passed, confidence, failures, checks, competitor), ``per_bone`` (or null), ``outputs`` (file kind ->
path), ``notes``, ``resources`` (wall_s, cpu_s, peak_rss_mb). The demo adds ``truth``.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import SimpleITK as sitk

#: Bump when the layout of the report changes in a way readers must know about.
REPORT_FORMAT_VERSION = 2
#: The top-level keys of every report.
REPORT_KEYS = (
    "report_format_version", "kind", "status", "created", "command", "software", "host", "inputs",
    "inspection", "plan", "result", "verdict", "per_bone", "outputs", "notes", "resources",
)


def software_versions() -> Dict[str, str]:
    """Versions of this package and of everything that shapes its numbers."""
    from .. import __version__

    return {
        "multimodal_knee_registration": __version__,
        "python": platform.python_version(),
        "simpleitk": sitk.Version_VersionString(),
        "numpy": np.__version__,
        "platform": platform.platform(terse=True),
    }


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident memory so far (MB), where the platform says (None elsewhere)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0, 1)


def build_report(outcome: Any, *, inputs: Dict[str, Any], inspection: Any = None, command: Optional[str] = None,
                 kind: str = "register", resources: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """The JSON-ready report of one ``RunOutcome`` (``outputs`` is filled in when the files are written).

    Example:
        >>> report = build_report(outcome, inputs={"fixed": "CT.nrrd", "moving": "MR.nrrd"},
        ...                       inspection=inspect_pair(ct, mr), command="knee-register register ...")
    """
    result = outcome.result
    result_dict = result.to_dict() if result is not None else None
    plan = result_dict.pop("plan", None) if result_dict else None
    for moved in ("sanity", "passed_sanity_checks", "verdict"):  # they live in the verdict
        (result_dict or {}).pop(moved, None)
    failures = [] if outcome.refusal is None else [outcome.refusal.what]
    return {
        "report_format_version": REPORT_FORMAT_VERSION,
        "kind": kind,
        "status": outcome.status,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(sys.argv),
        "software": software_versions(),
        "host": {"cpu_count": os.cpu_count(), "python_executable": sys.executable},
        "inputs": {key: str(value) if isinstance(value, Path) else value for key, value in inputs.items()},
        "inspection": inspection.to_dict() if hasattr(inspection, "to_dict") else inspection,
        "plan": plan,
        "result": result_dict,
        "verdict": {
            "passed": outcome.refusal is None and result is not None and bool(result.passed_sanity_checks),
            "confidence": getattr(result, "confidence", None),
            "failures": failures,
            "checks": result.sanity if result is not None else {},
            "competitor": _competitor(result),
        },
        "per_bone": outcome.per_bone.to_dict() if outcome.per_bone is not None else None,
        "outputs": {},
        "notes": list(outcome.notes),
        "resources": {**{k: round(v, 3) for k, v in (resources or {}).items()}, "peak_rss_mb": peak_rss_mb()},
        "transform_convention": "maps fixed-image physical points (LPS, mm) to moving-image points, "
                                "ITK resampling convention (like BRAINSFit --linearTransform)",
    }


def _competitor(result: Any) -> Optional[Dict[str, Any]]:
    """The competing pose the verdict names (``Verdict.competitor``), or None."""
    competitor = getattr(getattr(result, "verdict", None), "competitor", None)
    return competitor.to_dict() if competitor is not None else None
