"""Our command line (``python -m MultimodalKneeRegistrationLib register ...``) as a worker tool.

Why: the case family judges what a user gets, and a user gets an exit code and files, not a Python
object: exit 0 with a transform more than 2.5 mm off is a silent failure, exit 4 an honest refusal.
So ours runs exactly as typed at a shell, in its own process; its exit code, its report (format
version 1 or 2, read defensively) and, for a refusal, the refused result's transform (from
report.json, to say whether the refusal was needed) come back to the parent. With ``truth`` in the
job, ours starts AT the answer and only refines (``--init-mode Off``): where that ends is ours' floor
on the case (the porcine reference is one rigid fit for the whole specimen; a small cube far from
its centre can have its own best fit millimetres away).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from probe import Probe
from rigid import matrix_to_transform, transform_to_matrix


def report_facts(report: Dict[str, Any]) -> Dict[str, Any]:
    """Status, confidence, failures and resources from report.json, schema version 1 or 2."""
    verdict = report.get("verdict") or {}
    status = report.get("status")
    if status is None:  # version 1: only passed_sanity_checks
        status = "ok" if report.get("passed_sanity_checks") else "refused"
    result = report.get("result") or {}
    failures = verdict.get("failures")
    if failures is None:
        sanity = result.get("sanity") or {}
        failures = [name for name, check in sanity.items() if isinstance(check, dict) and not check.get("passed")]
    metric = result.get("metric") or {}
    return {
        "report_format_version": report.get("report_format_version"),
        "status": status,
        "confidence": verdict.get("confidence"),
        "failures": list(failures)[:10],
        "metric_after": metric.get("after"),
        "report_peak_rss_mb": (report.get("resources") or {}).get("peak_rss_mb"),
        "report_wall_s": (report.get("resources") or {}).get("wall_s"),
    }


def _reported_matrix(report: Dict[str, Any]) -> Optional[np.ndarray]:
    transform = (report.get("result") or {}).get("transform") or {}
    matrix = transform.get("matrix_lps_fixed_to_moving")
    return None if matrix is None else np.array(matrix, dtype=float)


def run_ours_cli(job: Dict[str, Any], probe: Probe) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """Run the CLI on the job's files; return (matrix or None, facts including ``exit_code``).

    Exit 0: the written transform.tfm. Exit 4: the refused result's matrix from the report, marked
    ``refused`` (the parent does not count it as an answer). Other codes: no matrix.
    """
    probe.mark("imported")
    probe.mark("loaded")  # the CLI reads its own inputs: its time includes reading
    with tempfile.TemporaryDirectory(prefix="ours_cli_") as tmp:
        out = Path(tmp, "out")
        command = [sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", job["fixed"], job["moving"],
                   "--output-dir", str(out), *job.get("cli_args", [])]
        if job.get("truth") is not None:
            sitk.WriteTransform(matrix_to_transform(np.array(job["truth"])), str(Path(tmp, "truth.tfm")))
            command += ["--initial-transform", str(Path(tmp, "truth.tfm")), "--init-mode", "Off"]
        probe.mark("spawned")
        completed = subprocess.run(command, capture_output=True, text=True)
        probe.mark("done")
        extra: Dict[str, Any] = {"exit_code": completed.returncode, "stderr_tail": completed.stderr[-1500:],
                                 "command": " ".join(command[1:])}
        report_file = out / "report.json"
        report = json.loads(report_file.read_text()) if report_file.is_file() else {}
        extra.update(report_facts(report) if report else {})
        matrix = None
        if completed.returncode == 0 and (out / "transform.tfm").is_file():
            matrix = transform_to_matrix(sitk.ReadTransform(str(out / "transform.tfm")))
        elif report:
            matrix = _reported_matrix(report)
            extra["refused"] = matrix is not None
    return matrix, extra
