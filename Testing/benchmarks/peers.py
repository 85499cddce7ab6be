"""The peers, one function per tool, each returning a fixed -> moving LPS matrix (run inside a worker).

Why: users choose between Slicer's General Registration (BRAINSFit), SlicerElastix and ANTs, so each
is run the way a user runs it: defaults, or the forum's tuned BRAINSFit recipe. BRAINSFit is the real
executable (BRAINSTools 5.8.0, the one Slicer 5.10 ships), and the recipe's "Crop Volume 8x" is Slicer's
own ResampleScalarVectorDWIVolume where it is found beside it. Every function
reads its inputs with the tool's own reader, marks the probe, and converts the tool's answer into
the ITK convention (fixed-space LPS points -> moving-space points); ``selfcheck.py`` verifies each
conversion on a known synthetic shift before any number is trusted.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import SimpleITK as sitk
from probe import Probe
from rigid import transform_to_matrix

ToolResult = Tuple[np.ndarray, Dict[str, Any]]

#: BRAINSFit's defaults as Slicer's General Registration (BRAINS) shows them.
BRAINSFIT_DEFAULTS = {
    "sampling_percentage": 0.002,
    "iterations": 1500,
    "max_step": 0.05,
    "min_step": 0.001,
    "relaxation": 0.5,
    "translation_scale": 1000.0,
    "bins": 50,
    "seed": 121212,
}
#: The forum's tuned recipe: Crop Volume 8x on the fine image, MR cropped to an ROI, every voxel sampled.
BRAINSFIT_TUNED = dict(BRAINSFIT_DEFAULTS, sampling_percentage=1.0, iterations=15000)


def _read_float(path: str) -> sitk.Image:
    return sitk.Cast(sitk.ReadImage(path), sitk.sitkFloat32)


def crop_to_box(image: sitk.Image, lower, upper) -> sitk.Image:
    """The index region of ``image`` covering the physical box (works for oblique grids)."""
    corners = np.array(
        [[x, y, z] for x in (lower[0], upper[0]) for y in (lower[1], upper[1]) for z in (lower[2], upper[2])]
    )
    index = np.array([image.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    size = np.array(image.GetSize())
    lo = np.clip(np.floor(index.min(axis=0)).astype(int), 0, size - 1)
    hi = np.clip(np.ceil(index.max(axis=0)).astype(int), 0, size - 1)
    return sitk.RegionOfInterest(image, (hi - lo + 1).tolist(), lo.tolist())


def crop_volume_grid(image: sitk.Image, factor: int, resample: str | None, folder: str) -> sitk.Image:
    """Crop Volume's interpolated mode at spacing multiplier ``factor`` (IsotropicResampling off), as the
    forum user ran it: linear interpolation at the centres of ``factor``-sized blocks, by Slicer's own
    ResampleScalarVectorDWIVolume with the arguments Crop Volume passes (``vtkSlicerCropVolumeLogic::
    CropInterpolated``). Without that executable: the block average (written in the row's extra)."""
    if resample is None:
        return sitk.BinShrink(image, [min(factor, s) for s in image.GetSize()])
    size, source, target = [s // factor for s in image.GetSize()], f"{folder}/crop_in.nrrd", f"{folder}/crop_out.nrrd"
    origin = np.array(image.GetOrigin()) + np.array(image.GetDirection()).reshape(3, 3) @ (
        np.array(image.GetSpacing()) * (factor - 1) / 2.0)
    sitk.WriteImage(image, source)
    command = [resample, "--interpolation", "linear", "--transform_order", "output-to-input", "--image_center", "input",
               "--spacing", ",".join(repr(s * factor) for s in image.GetSpacing()),
               "--size", ",".join(str(n) for n in size), "--origin", ",".join(repr(float(v)) for v in origin),
               "--direction_matrix", ",".join(repr(float(v)) for v in image.GetDirection()),
               "--default_pixel_value", "0", "--transform_matrix", "1,0,0,0,1,0,0,0,1,0,0,0", "--transform", "a",
               source, target]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ResampleScalarVectorDWIVolume exited {completed.returncode}: {completed.stderr[-1000:]}")
    return sitk.ReadImage(target)


def tuned_inputs(job: Dict[str, Any], fixed: sitk.Image, moving: sitk.Image, folder: str
                 ) -> Tuple[sitk.Image, sitk.Image]:
    """The forum recipe's preprocessing: fine (CT-like) image through Crop Volume 8x, MR cropped to the ROI."""
    images = {"fixed": fixed, "moving": moving}
    shrink = int(job["tuned_shrink"])
    if shrink > 1:
        images[job["fine_side"]] = crop_volume_grid(images[job["fine_side"]], shrink, job.get("resample"), folder)
    lower, upper = job["tuned_roi"]
    images[job["mr_side"]] = crop_to_box(images[job["mr_side"]], lower, upper)
    return images["fixed"], images["moving"]


def find_brainsfit(path: str | None) -> str | None:
    """The BRAINSFit executable given by ``--brainsfit`` or found on PATH (None: not installed)."""
    if path:
        return path if Path(path).is_file() else None
    return shutil.which("BRAINSFit")


def brainsfit_command(exe: str, fixed: str, moving: str, output: str, p: Dict[str, Any], threads: int) -> List[str]:
    return [
        exe,
        "--fixedVolume",
        fixed,
        "--movingVolume",
        moving,
        "--linearTransform",
        output,
        "--useRigid",
        "--initializeTransformMode",
        "useMomentsAlign",
        "--costMetric",
        "MMI",
        "--samplingPercentage",
        str(p["sampling_percentage"]),
        "--numberOfIterations",
        str(p["iterations"]),
        "--maximumStepLength",
        str(p["max_step"]),
        "--minimumStepLength",
        str(p["min_step"]),
        "--relaxationFactor",
        str(p["relaxation"]),
        "--translationScale",
        str(p["translation_scale"]),
        "--numberOfHistogramBins",
        str(p["bins"]),
        "--numberOfThreads",
        str(threads),
    ]


def run_brainsfit_exe(job: Dict[str, Any], probe: Probe) -> ToolResult:
    """The real BRAINSFit; the tuned recipe's preprocessing is done here and handed over as files."""
    probe.mark("imported")
    params = BRAINSFIT_TUNED if job["recipe"] == "tuned" else BRAINSFIT_DEFAULTS
    with tempfile.TemporaryDirectory(prefix="brainsfit_") as tmp:
        fixed_file, moving_file = job["fixed"], job["moving"]
        probe.mark("loaded")
        if job["recipe"] == "tuned":
            fixed, moving = tuned_inputs(job, sitk.ReadImage(fixed_file), sitk.ReadImage(moving_file), tmp)
            fixed_file, moving_file = f"{tmp}/fixed.nrrd", f"{tmp}/moving.nrrd"
            sitk.WriteImage(fixed, fixed_file)
            sitk.WriteImage(moving, moving_file)
            del fixed, moving
        output = f"{tmp}/transform.tfm"
        command = brainsfit_command(job["brainsfit"], fixed_file, moving_file, output, params, job["threads"])
        probe.mark("spawned")
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0 or not Path(output).is_file():
            raise RuntimeError(f"BRAINSFit exited {completed.returncode}: {completed.stderr[-2000:]}")
        matrix = transform_to_matrix(sitk.ReadTransform(output))
    probe.mark("done")
    return matrix, {"stdout_tail": completed.stdout[-500:],
                    "crop_volume": "ResampleScalarVectorDWIVolume" if job.get("resample") else "block average"}


def run_ants(job: Dict[str, Any], probe: Probe) -> ToolResult:
    """ANTsPy ``registration(type_of_transform="Rigid")`` with its defaults (Mattes MI)."""
    import ants

    probe.mark("imported")
    fixed, moving = ants.image_read(job["fixed"]), ants.image_read(job["moving"])
    probe.mark("loaded")
    with tempfile.TemporaryDirectory(prefix="ants_") as tmp:
        result = ants.registration(fixed, moving, type_of_transform="Rigid", outprefix=f"{tmp}/rigid_")
        probe.mark("done")
        # fwdtransforms[0] is an ITK affine .mat mapping fixed-space LPS points to moving space.
        matrix = transform_to_matrix(sitk.ReadTransform(result["fwdtransforms"][0]))
    return matrix, {"transform_files": [Path(f).name for f in result["fwdtransforms"]]}


def elastix_to_matrix(parameter_map) -> np.ndarray:
    """elastix's EulerTransform parameters (rx, ry, rz, tx, ty, tz about CenterOfRotationPoint) as a matrix."""
    if parameter_map["Transform"][0] != "EulerTransform":
        raise ValueError(f"expected an EulerTransform, got {parameter_map['Transform'][0]}")
    values = [float(v) for v in parameter_map["TransformParameters"]]
    center = [float(v) for v in parameter_map["CenterOfRotationPoint"]]
    euler = sitk.Euler3DTransform(center, values[0], values[1], values[2], values[3:6])
    if "ComputeZYX" in parameter_map and parameter_map["ComputeZYX"][0] == "true":
        euler.SetComputeZYX(True)
    return transform_to_matrix(euler)


def run_elastix(job: Dict[str, Any], probe: Probe) -> ToolResult:
    """itk-elastix with elastix's default rigid map (automatic transform initialisation is on in it)."""
    import itk

    probe.mark("imported")
    fixed = itk.imread(job["fixed"], itk.F)
    moving = itk.imread(job["moving"], itk.F)
    probe.mark("loaded")
    parameters = itk.ParameterObject.New()
    rigid = parameters.GetDefaultParameterMap("rigid")
    rigid["AutomaticTransformInitialization"] = ["true"]
    rigid["WriteResultImage"] = ["false"]  # the benchmark needs the transform only
    parameters.AddParameterMap(rigid)
    with tempfile.TemporaryDirectory(prefix="elastix_") as tmp:
        _, result = itk.elastix_registration_method(
            fixed, moving, parameter_object=parameters, log_to_console=False, output_directory=tmp
        )
    probe.mark("done")
    last = result.GetParameterMap(result.GetNumberOfParameterMaps() - 1)
    if result.GetNumberOfParameterMaps() != 1 or last["InitialTransformParameterFileName"][0] != "NoInitialTransform":
        raise RuntimeError("unexpected chain of elastix transforms; the conversion handles a single map only")
    return elastix_to_matrix(last), {"center": [float(v) for v in last["CenterOfRotationPoint"]]}


def _ours(job: Dict[str, Any], probe: Probe) -> ToolResult:
    from ours import run_ours

    return run_ours(job, probe)


def _ours_cli(job: Dict[str, Any], probe: Probe) -> ToolResult:
    from ours_cli import run_ours_cli

    return run_ours_cli(job, probe)


def _floor(job: Dict[str, Any], probe: Probe) -> ToolResult:
    from ours import run_floor

    return run_floor(job, probe)


TOOLS: Dict[str, Callable[[Dict[str, Any], Probe], ToolResult]] = {
    "ours": _ours,
    "ours-cli": _ours_cli,
    "floor": _floor,
    "brainsfit-exe": run_brainsfit_exe,
    "ants": run_ants,
    "elastix": run_elastix,
}
