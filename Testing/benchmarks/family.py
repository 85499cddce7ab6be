"""The case-family benchmark (issue 15): ours and the peers on >= 60 generated cases with known answers.

Usage (normally through ``run_family.sh``, which builds the benchmark environment first):
    Testing/benchmarks/run_family.sh                                # 60 drawn + 10 micro-CT-look + 3 pinned cases
    Testing/benchmarks/run_family.sh --microct-look 0               # the 63 cases of the first family only
    Testing/benchmarks/run_family.sh --tools ours --merge           # rerun ours only, keep the peers' rows
    Testing/benchmarks/run_family.sh --tools elastix,ants --only phantom,pair --merge
    Testing/benchmarks/run_family.sh --report-only                  # redo FAMILY.md and the PNGs
Cases come from ``MultimodalKneeRegistrationLib.synthetic.case_family`` (micro-CT-like cubes, full
CT/MR pairs and phantom pairs, starts in any orientation) and are cached on disk by spec hash. Each
tool runs in its own worker process with a time limit (``runner.py``); ours runs as the command line
a user types. Outcome per case and tool: success (<= 2.5 mm mean error over tissue points), SILENT
FAILURE (an answer returned, > 2.5 mm), refusal (exit 4 or the tool's own error), timeout, crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import cases as C
import family_report
import numpy as np
import runner
import SimpleITK as sitk
import suite
from MultimodalKneeRegistrationLib.synthetic.case_family import (
    Case,
    CaseSpec,
    cached_case,
    draw_spec,
    family_specs,
)
from MultimodalKneeRegistrationLib.synthetic.porcine import PorcineSources
from MultimodalKneeRegistrationLib.synthetic.poses import axis_angle_matrix
from run_benchmarks import default_data_dir, machine_info
from sections import log

HERE = Path(__file__).resolve().parent  # run as a script: this folder is on sys.path
SUCCESS_MM = 2.5
RAW_NAME = "raw_family.json"
BASELINE_NAME = "raw_family_baseline.json"
DEFAULT_BRAINSFIT = HERE.parents[1] / ".." / "shared" / "tools" / "slicer-cli" / "bin" / "BRAINSFit"
#: Ours as a user runs it: default preset; --no-resampled so that its time is the registration's
#: (plus reading, QC picture and report), like the peers', not the writing of a resampled volume.
OURS_ARGS = "--no-resampled"


def pinned_specs(sources: PorcineSources) -> List[CaseSpec]:
    """Issue 15's own cases, re-drawn: the 30 mm / 0.1 mm oblique off-centre cube as the fixed image
    moved 35 deg + 30 mm (87 mm off with exit 0 there), the 40 mm / 0.2 mm cube moved 15 deg + 25 mm,
    and the 40 mm cube turned 120 deg (refused there)."""
    oblique = tuple(axis_angle_matrix((0.3, -0.5, 0.8), 37.0).ravel())
    common = dict(fine_fixed=True, grid_direction=oblique, noise_hu=20.0, units="scaled")
    return [
        draw_spec("cube", 15001, sources, "within60", label="issue15-30mm", side_mm=30.0, spacing_mm=0.1,
                  start_angle_deg=35.0, start_shift_mm=30.0, **common),
        draw_spec("cube", 15002, sources, "within60", label="issue15-40mm", side_mm=40.0, spacing_mm=0.2,
                  start_angle_deg=15.0, start_shift_mm=25.0, **common),
        draw_spec("cube", 15003, sources, "any", label="issue15-120deg", side_mm=40.0, spacing_mm=0.2,
                  start_angle_deg=120.0, start_shift_mm=25.0, **common),
    ]


def tools(names: List[str], brainsfit: Optional[str], ours_args: List[str]) -> Dict[str, suite.Tool]:
    """The tools by short name: ours (the CLI), ours-floor (ours started at the answer: told the answer, so
    not a contender; it says how close ours can get), brainsfit (defaults), brainsfit-tuned, elastix, ants."""
    chosen: Dict[str, suite.Tool] = {}
    for name in names:
        if name in ("ours", "ours-floor"):
            label = "ours (CLI, default preset)" if name == "ours" else "ours started at the answer (its floor)"
            chosen[name] = suite.Tool(label, "ours-cli", (("cli_args", ours_args),), name)
        elif name in ("brainsfit", "brainsfit-tuned"):
            if not brainsfit:
                log(f"{name}: no BRAINSFit executable found (give --brainsfit PATH); not run")
                continue
            chosen[name] = suite.brainsfit_exe("defaults" if name == "brainsfit" else "tuned", brainsfit)
        elif name in ("elastix", "ants"):
            chosen[name] = suite.ELASTIX if name == "elastix" else suite.ANTS
        else:
            raise SystemExit(f"unknown tool {name!r}: use ours, ours-floor, brainsfit, brainsfit-tuned, elastix, ants")
    return chosen


def job_inputs(case: Case) -> Dict[str, Any]:
    """Files plus what the forum's tuned BRAINSFit recipe needs (fine side, shrink, MR-space ROI)."""
    fine_side = "fixed" if case.spec.fine_fixed else "moving"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(case.fixed_path if fine_side == "fixed" else case.moving_path))
    reader.ReadImageInformation()
    fine = C.Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), 2, reader.GetDirection())
    roi = C._roi_in_mr(fine, case.truth if fine_side == "fixed" else np.linalg.inv(case.truth))
    return {
        "fixed": str(case.fixed_path),
        "moving": str(case.moving_path),
        "fine_side": fine_side,
        "mr_side": "moving" if fine_side == "fixed" else "fixed",
        "tuned_shrink": max(1, round(8 / case.spec.ct_shrink)),
        "tuned_roi": [list(map(float, roi[0])), list(map(float, roi[1]))],
    }


def classify(case: Case, tool_name: str, outcome: Dict[str, Any]) -> Dict[str, Any]:
    """One row: errors against the answer and the outcome class the user would have met."""
    extra = outcome.get("extra") or {}
    row: Dict[str, Any] = {
        "case": case.name,
        "tool": tool_name,
        "exit_code": extra.get("exit_code", outcome.get("exit_code")),
        **{k: outcome.get(k) for k in ("wall_s", "cpu_s", "peak_rss_mb", "load_before", "seconds")},
        **{k: extra.get(k) for k in ("status", "confidence", "failures", "metric_after", "report_format_version")
           if k in extra},
    }
    matrix = outcome.get("matrix")
    if matrix is not None:
        errors = case.errors_mm(np.array(matrix))
        prefix = "refused_" if extra.get("refused") else ""
        row[prefix + "mean_mm"], row[prefix + "max_mm"] = float(errors.mean()), float(errors.max())
    status = outcome["status"]
    if status in ("timeout", "crashed"):
        row["outcome"] = "timeout" if status == "timeout" else "crash"
    elif status == "error":  # the tool raised: a peer's own error is its refusal; ours' wrapper failing is a bug
        row["outcome"] = "crash" if tool_name.startswith("ours") else "refusal"
    elif row["exit_code"] in (None, 0):
        if "mean_mm" not in row:
            row["outcome"] = "crash"
        else:
            row["outcome"] = "success" if row["mean_mm"] <= SUCCESS_MM else "silent"
    else:
        row["outcome"] = "refusal" if row["exit_code"] in (2, 3, 4) else "crash"
    note = outcome.get("error") or (extra.get("stderr_tail") if row["outcome"] != "success" else "")
    if note:
        row["note"] = " ".join(str(note).split())[-400:]
    return row


def case_record(case: Case) -> Dict[str, Any]:
    return {"spec": case.spec.to_dict(), "description": case.description, "facts": case.facts,
            "fixed_kind": case.fixed_kind, "moving_kind": case.moving_kind}


def select(specs: List[CaseSpec], only: str) -> List[CaseSpec]:
    """Specs whose name starts with one of the comma-separated ``only`` prefixes (all when empty)."""
    prefixes = [p for p in only.split(",") if p]
    return [s for s in specs if not prefixes or any(s.name.startswith(p) for p in prefixes)]


def build_cases(args: argparse.Namespace) -> List[Case]:
    """Draw the specs, then generate (or find in the cache) every selected case."""
    sources = PorcineSources(args.data, args.reference) if (args.data / "CT.nrrd").is_file() else None
    if sources is None:
        log(f"porcine data not found in {args.data}: phantom cases only")
        specs = family_specs(args.cases, args.seed, None, families=("phantom",))
    else:
        specs = family_specs(args.cases, args.seed, sources, microct_look=args.microct_look)
        specs += [] if args.no_pinned else pinned_specs(sources)
    chosen = []
    for spec in select(specs, args.only):
        began = time.perf_counter()
        chosen.append(cached_case(spec, sources, args.cache_dir))
        log(f"case {spec.name} ({time.perf_counter() - began:.1f} s): {chosen[-1].description}")
    return chosen


def run(args: argparse.Namespace, raw: Dict[str, Any], raw_file: Path) -> None:
    """Run every chosen tool on every chosen case, saving the raw file after each job."""
    chosen_tools = tools(args.tools.split(","), args.brainsfit, args.ours_args.split())
    cases = build_cases(args)
    done = {(r["case"], r["tool"]) for r in raw["rows"]} if args.resume else set()
    jobs: List[Dict[str, Any]] = []
    for case in cases:
        raw["cases"][case.name] = case_record(case)
        for name, tool in chosen_tools.items():
            if (case.name, name) in done:
                continue
            options = dict(tool.options, tool_name=name, truth=case.truth.tolist() if name == "ours-floor" else None)
            jobs.append(dict(job_inputs(case), tool=tool.tool, label=tool.label, case=case.name, **options))
    log(f"{len(jobs)} runs: {len(cases)} cases x {', '.join(chosen_tools)}; {args.jobs} at a time, "
        f"{args.threads} thread(s) each, {args.timeout:.0f} s limit")
    lock, by_name = threading.Lock(), {case.name: case for case in cases}
    rerun = {(job["case"], job["tool_name"]) for job in jobs}
    raw["rows"] = [r for r in raw["rows"] if (r["case"], r["tool"]) not in rerun]

    def on_done(job: Dict[str, Any], outcome: Dict[str, Any]) -> None:
        case, name = by_name[job["case"]], job["tool_name"]
        row = dict(classify(case, name, outcome), commit=raw["runs"][-1]["machine"]["our_code"],
                   date=time.strftime("%Y-%m-%d %H:%M"))
        with lock:
            raw["rows"].append(row)
            _save(raw, raw_file)
        log(f"  {case.name:26s} {name:10s} {row['outcome']:8s} mean {row.get('mean_mm', float('nan')):7.2f} mm "
            f"exit {row['exit_code']} wall {row['wall_s']:.0f} s cpu {row['cpu_s']:.0f} s")

    runner.run_many(jobs, args.timeout, args.threads, args.work_dir, args.jobs, on_done)


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=60, help="drawn cases (default 60; + --microct-look, +3 pinned)")
    parser.add_argument("--seed", type=int, default=1, help="family seed (case i gets seed 1000*S + i)")
    parser.add_argument("--tools", default="ours,brainsfit", help="ours,brainsfit,brainsfit-tuned,elastix,ants")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 whenever times are compared)")
    parser.add_argument("--threads", type=int, help="threads per run (default: cores / jobs)")
    parser.add_argument("--timeout", type=float, default=300.0, help="time limit per run, s (default 300)")
    parser.add_argument("--only", default="", help="comma-separated case-name prefixes, e.g. phantom,cube1003")
    parser.add_argument("--microct-look", type=int, default=10, metavar="N",
                        help="append N cubes that look like real micro-CTs (uint8 / uint16-offset / inverted / "
                             "scaled / hu; trabeculae, rings, cupping, cylindrical field of view; seeds "
                             "1000*S + 900 + i, named like cube1900-mct-uint8; default 10)")
    parser.add_argument("--no-pinned", action="store_true", help="leave out the issue-15 cases")
    parser.add_argument("--merge", action="store_true", help="keep the raw file's other (case, tool) rows")
    parser.add_argument("--resume", action="store_true", help="like --merge, and skip (case, tool) rows present")
    parser.add_argument("--save-baseline", action="store_true", help=f"also copy the raw file to {BASELINE_NAME}")
    parser.add_argument("--report-only", action="store_true", help="rewrite FAMILY.md and PNGs from the raw file")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--reference", type=Path, help="CT -> MR answer (default: the data's reference_ct_to_mr.tfm)")
    parser.add_argument("--brainsfit", help="BRAINSFit executable (default: ../shared/tools/... or on PATH)")
    parser.add_argument("--ours-args", default=OURS_ARGS, help=f"extra CLI arguments for ours ({OURS_ARGS!r})")
    parser.add_argument("--cache-dir", type=Path, default=HERE / ".family_cache")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    args.merge = args.merge or args.resume
    if not args.brainsfit:
        found = shutil.which("BRAINSFit")
        args.brainsfit = str(DEFAULT_BRAINSFIT.resolve()) if DEFAULT_BRAINSFIT.is_file() else found
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    raw_file, baseline_file = args.out / RAW_NAME, args.out / BASELINE_NAME
    if args.report_only:
        family_report.write(json.loads(raw_file.read_text()), args.out, _baseline(baseline_file))
        return 0
    raw: Dict[str, Any] = {"success_mm": SUCCESS_MM, "runs": [], "cases": {}, "rows": []}
    if args.merge and raw_file.is_file():
        raw = json.loads(raw_file.read_text())
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    raw["runs"].append({"machine": machine_info(), "argv": argv_text, "threads": args.threads, "jobs": args.jobs,
                        "timeout_s": args.timeout, "tools": args.tools, "brainsfit": args.brainsfit})
    temporary = args.work_dir is None
    args.work_dir = args.work_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"mkr_family_{os.getpid()}"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    try:
        run(args, raw, raw_file)
    finally:
        raw["runs"][-1].update(minutes=round((time.perf_counter() - began) / 60, 1),
                               load_average_end=[round(v, 2) for v in os.getloadavg()])
        _save(raw, raw_file)
        if temporary:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    if args.save_baseline:
        shutil.copyfile(raw_file, baseline_file)
    written = family_report.write(raw, args.out, _baseline(baseline_file))
    log(f"done in {raw['runs'][-1]['minutes']} min: {written}")
    return 0


def _save(raw: Dict[str, Any], path: Path) -> None:
    """Write the raw file atomically: an interrupted run never leaves half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(raw, indent=1, default=float))
    os.replace(partial, path)


def _baseline(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
