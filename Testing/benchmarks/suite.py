"""What each mode runs: cases, tools per case, the capture grid and the scaling sizes.

Why: the full run must fit ~60 minutes on 2 cores and the quick one ~10, so every choice that costs
time (which cases, which grid cells, how many random axes, which volume sizes, time limits) lives
here in one place, and the report prints it next to the numbers it produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from cases import Case


@dataclass(frozen=True)
class Tool:
    """One row of the comparison: a worker tool plus its options."""

    label: str
    tool: str
    options: Tuple[Tuple[str, Any], ...] = ()
    kind: str = "peer"  # "ours" or "peer"

    def job(self, case: Case) -> Dict[str, Any]:
        return dict(case.job_inputs(), tool=self.tool, label=self.label, case=case.name, **dict(self.options))


def ours(preset: str) -> Tool:
    return Tool(f"ours ({preset})", "ours", (("preset", preset),), kind="ours")


def ours_brainsfit(preset: str, path: str) -> Tool:
    """Our plan and search, then the real BRAINSFit as the engine (``--engine BRAINSFit``)."""
    return Tool(f"ours, BRAINSFit engine ({preset})", "ours",
                (("preset", preset), ("engine", "BRAINSFit"), ("brainsfit", path)), kind="ours")


#: The real BRAINSFit replaced its SimpleITK re-creation (issue 11): these labels name its two recipes.
BRAINSFIT_DEFAULTS = "BRAINSFit defaults (executable)"
BRAINSFIT_TUNED = "BRAINSFit tuned recipe (executable)"
ANTS = Tool("ANTs Rigid (ANTsPy)", "ants")
ELASTIX = Tool("elastix rigid (itk-elastix)", "elastix")


def brainsfit_exe(recipe: str, path: str) -> Tool:
    """The real BRAINSFit; the tuned recipe's Crop Volume 8x uses ResampleScalarVectorDWIVolume beside it."""
    resample = Path(path).with_name("ResampleScalarVectorDWIVolume")
    options = (("recipe", recipe), ("brainsfit", path)) + (
        (("resample", str(resample)),) if recipe == "tuned" and resample.is_file() else ())
    return Tool(BRAINSFIT_DEFAULTS if recipe == "defaults" else BRAINSFIT_TUNED, "brainsfit-exe", options)


def peers(brainsfit: Optional[str]) -> List[Tool]:
    tools = [brainsfit_exe("defaults", brainsfit), brainsfit_exe("tuned", brainsfit)] if brainsfit else []
    return tools + [ANTS, ELASTIX]


def tools_for(case: Case, brainsfit: Optional[str], skip: Tuple[str, ...] = ()) -> List[Tool]:
    """Ours with each preset that applies to the case (and its first with the BRAINSFit engine), then
    every peer (minus ``skip`` labels)."""
    chosen = [ours(preset) for preset in case.presets]
    if brainsfit:
        chosen.append(ours_brainsfit(case.presets[0], brainsfit))
    chosen += peers(brainsfit)
    return [tool for tool in chosen if tool.label not in skip]


@dataclass(frozen=True)
class Mode:
    name: str
    cases: Tuple[str, ...]
    timeout_s: float
    grid_angles: Tuple[float, ...]
    grid_translations: Tuple[float, ...]
    grid_axes: int
    grid_ct_factor: int
    grid_parallel: int
    grid_native_ours: bool
    grid_tools: Tuple[str, ...]
    scaling_spacings: Tuple[float, ...]
    scaling_side_mm: float
    #: (tool label, case names) pairs not run, each with the reason printed in the report.
    skips: Tuple[Tuple[str, Tuple[str, ...], str], ...] = ()
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def skipped(self, case_name: str) -> Dict[str, str]:
        return {label: reason for label, names, reason in self.skips if case_name in names}


#: Cases: (CT side, MR fixed?, start offset from the answer (deg, mm) or None = as scanned, description).
#: An offset case moves the MR header so that the known answer is exactly that rigid offset.
CASE_SPECS = {
    "pair": ("CT", False, None, "the real pair as scanned (the answer is a ~178 deg turn); CT fixed"),
    "pair-mr-fixed": ("CT", True, None, "the real pair as scanned; MR fixed, CT moving"),
    "pair-ct4x": ("CT 4x", False, None, "as scanned, CT block-averaged 4x (1.6x1.6x2.5 mm)"),
    "start-20-20": ("CT", False, (20.0, 20.0), "start 20 deg + 20 mm from the answer; CT fixed"),
    "start-20-20-mr-fixed": ("CT", True, (20.0, 20.0), "start 20 deg + 20 mm from the answer; MR fixed"),
    "start-20-20-ct4x": ("CT 4x", False, (20.0, 20.0), "start 20 deg + 20 mm; CT 4x fixed (as the reference runs)"),
    "start-40-50": ("CT", False, (40.0, 50.0), "start 40 deg + 50 mm from the answer; CT fixed"),
    "microct": ("micro-CT", False, None, "48 mm cube of the CT at 0.15 mm (uint16 + noise) fixed, MR as scanned"),
    "microct-start-20-20": ("micro-CT", False, (20.0, 20.0), "micro-CT cube fixed, start 20 deg + 20 mm"),
    "microct-start-20-20-mr-fixed": ("micro-CT", True, (20.0, 20.0), "micro-CT cube moving, MR fixed, 20 deg + 20 mm"),
}

MODES = {
    "quick": Mode(
        name="quick",
        cases=("start-20-20-ct4x", "start-20-20", "microct-start-20-20", "pair"),
        timeout_s=150.0,
        grid_angles=(0.0, 45.0),
        grid_translations=(0.0, 60.0),
        grid_axes=1,
        grid_ct_factor=4,
        grid_parallel=2,
        grid_native_ours=False,
        grid_tools=("ours (mri-ct)", BRAINSFIT_DEFAULTS, ELASTIX.label),
        scaling_spacings=(0.3, 0.2),
        scaling_side_mm=60.0,
        skips=(
            (BRAINSFIT_TUNED, tuple(CASE_SPECS), "not run in --quick (3-4 min a run)"),
            (BRAINSFIT_DEFAULTS, ("start-20-20", "pair"), "not run in --quick (~4 min on the native CT)"),
            (
                ANTS.label,
                ("start-20-20", "microct-start-20-20", "pair"),
                "not run in --quick (> 4 min on these inputs)",
            ),
            (ELASTIX.label, ("pair",), "not run in --quick"),
        ),
        notes=(
            "--quick: 4 cases with some peers left out (see the notes), a 2x2 capture grid with 1 random axis "
            "per cell and without ANTs, 2 scaling sizes.",
        ),
    ),
    "full": Mode(
        name="full",
        cases=(
            "pair",
            "start-20-20",
            "start-20-20-mr-fixed",
            "start-20-20-ct4x",
            "microct-start-20-20",
            "microct-start-20-20-mr-fixed",
        ),
        timeout_s=240.0,
        grid_angles=(0.0, 15.0, 30.0, 45.0, 60.0),
        grid_translations=(0.0, 30.0, 60.0, 80.0),
        grid_axes=1,
        grid_ct_factor=4,
        grid_parallel=2,
        grid_native_ours=False,
        grid_tools=("ours (mri-ct)", BRAINSFIT_DEFAULTS, ANTS.label, ELASTIX.label),
        scaling_spacings=(0.3, 0.2, 0.15, 0.1, 0.075),
        scaling_side_mm=60.0,
        notes=(
            "--full: to fit ~60 min on 2 cores, the capture grid has 1 random axis per cell (20 starts per "
            "tool), uses the CT 4x as the fixed image for every tool, and leaves out the tuned BRAINSFit "
            "recipe (3-4 min a run); the known-offset cases of the table are the grid's cells. A tool that "
            "timed out is not run again on a case whose fixed image has at least as many voxels.",
        ),
    ),
}
