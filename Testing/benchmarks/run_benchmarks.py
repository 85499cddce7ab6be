"""Benchmark ours against BRAINSFit (recipes), ANTs and elastix on the porcine CT/MR pair.

Usage (normally through ``run_benchmarks.sh``, which builds the environment first):
    python Testing/benchmarks/run_benchmarks.py --quick     # ~10 min smoke run
    python Testing/benchmarks/run_benchmarks.py --full      # ~60 min, regenerates results/
Sections: selfcheck (conversions verified), cases (table), grid (capture range), scaling (time and
memory against volume size). Raw outcomes go to results/raw_<mode>.json; ``report.py`` turns them
into results/RESULTS.md and PNGs (``--report-only`` redoes that from the raw file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as C  # noqa: E402
import report  # noqa: E402
import suite  # noqa: E402
from peers import find_brainsfit  # noqa: E402
from sections import (  # noqa: E402
    CORRECTED_REFERENCE,
    SUCCESS_MM,
    Bench,
    log,
    run_cases,
    run_grid,
    run_scaling,
    run_selfcheck,
)

#: The real BRAINSFit built from source for this project (used when --brainsfit is not given and PATH has none).
SHARED_BRAINSFIT = (HERE.parents[1] / ".." / "shared" / "tools" / "slicer-cli" / "bin" / "BRAINSFit").resolve()


def default_data_dir() -> Path:
    env = os.environ.get("MKR_SHARED_DATA")
    if env:
        return Path(env) / "porcine_ct_mr" if (Path(env) / "porcine_ct_mr").is_dir() else Path(env)
    return HERE.parents[1] / ".." / "shared" / "data" / "porcine_ct_mr"


def machine_info() -> Dict[str, Any]:
    import platform

    import psutil

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for module in ("SimpleITK", "ants", "itk", "numpy", "MultimodalKneeRegistrationLib"):
        try:
            versions[module] = getattr(__import__(module), "__version__", "?")
        except Exception as error:  # a missing peer is reported, not fatal
            versions[module] = f"unavailable ({type(error).__name__})"
    return {
        "our_code": _git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _git_state() -> str:
    """Commit and number of locally modified files of the package under test (read-only git calls)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "MultimodalKneeRegistration"],
            cwd=HERE.parents[1],
            capture_output=True,
            text=True,
        )
        changed = len([line for line in dirty.stdout.splitlines() if line.strip()])
        return f"{head.stdout.strip() or '?'}" + (f" + {changed} modified file(s)" if changed else "")
    except OSError:
        return "unknown"


def _merged(
    old: Dict[str, Any], new: Dict[str, Any], tools: List[str] | None = None, cases: List[str] | None = None
) -> Dict[str, Any]:
    """``new`` plus the sections only ``old`` has; the run's facts are listed per invocation.

    With ``tools`` (the ``--tools`` fragments) or ``cases`` (the ``--cases`` names), a rerun section
    keeps ``old``'s rows of the other tools and other cases, so one tool or one case can be
    re-measured without rerunning the rest.
    """

    def rerun(row: Dict[str, Any]) -> bool:
        tool_rerun = not tools or any(t in str(row.get("tool", "")) for t in tools)
        case_rerun = not cases or "case" not in row or row["case"] in cases
        return tool_rerun and case_rerun

    merged = dict(new)
    for section in ("selfcheck", "cases", "grid", "scaling"):
        if section not in new and section in old:
            merged[section] = old[section]
        elif (tools or cases) and isinstance(new.get(section), list) and isinstance(old.get(section), list):
            merged[section] = [row for row in old[section] if not rerun(row)] + new[section]
    merged["sections"] = [s for s in ("selfcheck", "cases", "grid", "scaling") if s in merged]
    merged["total_minutes"] = round(old.get("total_minutes", 0) + new["total_minutes"], 1)
    earlier = old.get("earlier_runs", []) + [
        {k: old.get(k) for k in ("machine", "sections", "total_minutes", "load_average_end")}
    ]
    merged["earlier_runs"] = earlier
    return merged


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="mode", const="quick")
    group.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument(
        "--reference",
        default=str(CORRECTED_REFERENCE),
        help="CT -> MR answer (.tfm); 'shared' = the data set's reference_ct_to_mr.tfm (default: the corrected one)",
    )
    parser.add_argument("--brainsfit", help="path of a BRAINSFit executable (default: BRAINSFit on PATH, else "
                        "../shared/tools/slicer-cli/bin/BRAINSFit)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work-dir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, help="time limit per run in seconds (default: the mode's)")
    parser.add_argument("--sections", default="selfcheck,cases,grid,scaling")
    parser.add_argument("--cases", help="comma-separated case names (default: the mode's)")
    parser.add_argument("--tools", default="", help="comma-separated label fragments to run (default: all)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other sections of an earlier raw file of the same mode (to rerun one section)",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md/PNGs from the raw file")
    args = parser.parse_args(argv)
    mode = suite.MODES[args.mode or "quick"]
    if args.cases:
        mode = suite.Mode(**{**mode.__dict__, "cases": tuple(args.cases.split(","))})
    if args.timeout:
        mode = suite.Mode(**{**mode.__dict__, "timeout_s": args.timeout})
    args.out.mkdir(parents=True, exist_ok=True)
    raw_file = args.out / f"raw_{mode.name}.json"
    if args.report_only:
        report.write(json.loads(raw_file.read_text()), args.out)
        return 0
    if not args.data.is_dir():
        print(f"data folder {args.data} not found: give --data or set MKR_SHARED_DATA", file=sys.stderr)
        return 2
    brainsfit = find_brainsfit(args.brainsfit) or find_brainsfit(str(SHARED_BRAINSFIT))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mkr_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    only_tools = [t for t in args.tools.split(",") if t]
    began = time.perf_counter()
    raw: Dict[str, Any] = {
        "mode": mode.name,
        "mode_settings": {k: v for k, v in mode.__dict__.items()},
        "machine": machine_info(),
        "brainsfit": brainsfit,
        "threads": args.threads,
        "success_mm": SUCCESS_MM,
        "sections": sections,
    }
    try:
        log(f"mode {mode.name}; data {args.data}; work {work}; BRAINSFit executable: {brainsfit or 'not found'}")
        reference = args.data / "reference_ct_to_mr.tfm" if args.reference == "shared" else Path(args.reference)
        raw["reference"] = str(reference)
        pair = C.load_pair(args.data, reference)
        bench = Bench(pair, work, mode, args.out)
        raw["specimen_points"] = int(len(pair.specimen_points))
        if "selfcheck" in sections:
            raw["selfcheck"] = run_selfcheck(bench, args.threads, brainsfit)
        if "cases" in sections:
            raw["cases"] = run_cases(bench, brainsfit, args.threads, only_tools)
        if "grid" in sections:
            raw["grid"] = run_grid(bench, args.threads, only_tools, brainsfit)
        if "scaling" in sections:
            raw["scaling"] = run_scaling(bench, args.threads)
    finally:
        raw["total_minutes"] = round((time.perf_counter() - began) / 60, 1)
        raw["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        if args.merge and raw_file.is_file():
            raw = _merged(
                json.loads(raw_file.read_text()),
                raw,
                args.tools.split(",") if args.tools else None,
                args.cases.split(",") if args.cases else None,
            )
        raw_file.write_text(json.dumps(raw, indent=1, default=float))
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    written = report.write(raw, args.out)
    log(f"done in {raw['total_minutes']} min: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
