"""The run report: what went in, what was decided, what came out, and with which software.

Why: a registration someone has to trust later (in a paper, in a clinic) must be reproducible from
its record: the inputs, the plan, every stage's stop condition, the sanity checks, and the exact
versions. ``report.json`` is that record; it is written even when the sanity checks fail, so the
user can see why.
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

from .image_io import PathLike, write_json_atomic

#: Bump when the layout of the report changes in a way readers must know about.
REPORT_FORMAT_VERSION = 1


def software_versions() -> Dict[str, str]:
    """Versions of this package and of everything that shapes its numbers."""
    from . import __version__

    return {
        "multimodal_knee_registration": __version__,
        "python": platform.python_version(),
        "simpleitk": sitk.Version_VersionString(),
        "numpy": np.__version__,
        "platform": platform.platform(terse=True),
    }


def build_report(result: Any, *, inputs: Dict[str, Any], inspection: Any = None,
                 outputs: Optional[Dict[str, Any]] = None, command: Optional[str] = None) -> Dict[str, Any]:
    """Assemble the JSON-ready report of one run.

    ``result`` is a ``RegistrationResult`` (or None when the run stopped before producing one),
    ``inputs`` names the input files and options, ``inspection`` is the ``PairInspection`` (or None),
    ``outputs`` maps output kinds to the files written.

    Example:
        >>> report = build_report(result, inputs={"fixed": "CT.nrrd", "moving": "MR.nrrd"},
        ...                       inspection=inspect_pair(ct, mr), outputs={"transform": "t.tfm"},
        ...                       command="knee-register register CT.nrrd MR.nrrd --output-dir out")
    """
    outputs = {key: str(value) for key, value in (outputs or {}).items()}
    report: Dict[str, Any] = {
        "report_format_version": REPORT_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(sys.argv),
        "software": software_versions(),
        "host": {"cpu_count": os.cpu_count(), "python_executable": sys.executable},
        "inputs": {key: str(value) if isinstance(value, Path) else value for key, value in inputs.items()},
        "inspection": inspection.to_dict() if hasattr(inspection, "to_dict") else inspection,
        "outputs": outputs,
        "transform_convention": "maps fixed-image physical points (LPS, mm) to moving-image points, "
                                "ITK resampling convention (like BRAINSFit --linearTransform)",
    }
    if result is not None:
        report["result"] = result.to_dict()
        report["passed_sanity_checks"] = bool(result.passed_sanity_checks)
    else:
        report["result"] = None
        report["passed_sanity_checks"] = False
    return report


def write_report(path: PathLike, report: Dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``report`` as strict JSON, atomically (NaN becomes null).

    Example:
        >>> write_report("out/report.json", report, overwrite=True)
    """
    return write_json_atomic(report, path, overwrite=overwrite)
