"""BRAINSFit as an engine of the one registration path: same plan, same start, same checks.

Why: Slicer users trust General Registration (BRAINS); batch users who have Slicer installed have
its BRAINSFit executable too. Its failures on MRI <-> micro-CT came from what it was given (a far
start, 0.2% sampling of a 1 GB image, a large image to search), not from its optimiser. Here it gets
the working images the pipeline prepared, our search's start (``initializeTransformMode`` Off), the
plan's sampling and BRAINSFit's own step scales; the pipeline then measures and checks its result
exactly as it does the SimpleITK engine's.

How BRAINSFit is run is pluggable (``runner``): outside Slicer, the executable in a subprocess
(``BrainsFitExecutable``); inside Slicer, Slicer's CLI module logic
(``MultimodalKneeRegistrationSlicer.brainsfit_runner``).
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Protocol, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import EngineError, InputError
from ..geometry import apply_matrix, image_center, index_to_physical_matrix, transform_from_matrix, transform_to_matrix
from ..progress import Progress
from ..results import StageResult
from .base import EngineOutput
from .brainsfit_parameters import brainsfit_parameters
from .external_process import run_external

#: Where Slicer installs keep BRAINSFit (relative to the install's root), for ``find_brainsfit``.
_SLICER_CLI_GLOBS = ("lib/Slicer-*/cli-modules/BRAINSFit", "Contents/lib/Slicer-*/cli-modules/BRAINSFit")
_SLICER_ROOT_GLOBS = ("/Applications/Slicer*.app", "~/Slicer*", "/opt/Slicer*", "/usr/local/Slicer*")


class BrainsFitRunner(Protocol):
    """Runs BRAINSFit once on images and returns its linear transform (fixed -> moving, LPS)."""

    def run(self, fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, parameters: dict,
            progress: Progress) -> Tuple[sitk.Transform, str]:
        """``parameters`` has every BRAINSFit.xml name but ``DATA_PARAMETERS`` (the volumes and
        transforms), which the runner adds (file paths or node IDs). Returns (transform, BRAINSFit's
        output text); a run that fails raises ``EngineError``."""
        ...


class BrainsFitEngine:
    """The ``RegistrationEngine`` that hands the prepared working images to BRAINSFit."""

    name = "BRAINSFit"
    #: BRAINSFit has masks (``maskProcessingMode ROI``), not passed here yet: a mask would have to be
    #: written and handed to both runners (the executable and Slicer's CLI node).
    takes_mask = False

    def __init__(self, runner: Optional[BrainsFitRunner] = None) -> None:
        self.runner = runner if runner is not None else BrainsFitExecutable(find_brainsfit())

    def run(self, fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, plan, progress: Progress,
            mask: Optional[sitk.Image] = None) -> EngineOutput:
        if mask is not None:
            raise InputError("the BRAINSFit engine here takes no mask", "register bones with the SimpleITK engine")
        began = time.perf_counter()
        parameters = brainsfit_parameters(plan, fixed_voxel_count=int(np.prod(fixed.GetSize())))
        fixed, initial = brainsfit_start(fixed, initial)
        transform, output = self.runner.run(fixed, moving, initial, parameters, progress)
        stage = StageResult(
            "BRAINSFit " + "+".join(plan.optimizer.transform_stages), -1, _stop_condition(output), np.nan,
            time.perf_counter() - began, endpoint=transform,
        )
        return EngineOutput(transform=transform, stages=[stage])


def brainsfit_start(fixed: sitk.Image, initial: sitk.Transform) -> Tuple[sitk.Image, sitk.Transform]:
    """The fixed image and start to hand BRAINSFit so that it starts exactly at ``initial``.

    BRAINSFit sets the centre of its versor transforms to the fixed image's intensity centre of
    gravity and keeps the transform's parameters (``BRAINSCommonLib/genericRegistrationHelper.hxx``
    lines 193-211, in the BRAINSTools of Slicer 5.6.2 (37b0a0f), 5.8.1 (3b3cfd0) and 5.10.0 (36ae552,
    the binary tested here)). That moves the start by (I - R)(new centre - old centre): nothing for
    a small rotation, 66 mm for the porcine pair's 178 deg turn, from which BRAINSFit then wandered
    off. So the start is written about that very centre, where moving the centre changes nothing.
    The fixed image is first shifted to non-negative intensities (mutual information, and BRAINSFit's
    histogram over each image's own range, do not change) so that the centre of gravity lies inside
    the image instead of wherever negative CT values would push it.
    """
    low = float(np.min(sitk.GetArrayViewFromImage(fixed)))
    shifted = sitk.ShiftScale(fixed, -low, 1.0) if low < 0 else fixed
    return shifted, transform_from_matrix(transform_to_matrix(initial), center_of_gravity(shifted))


def center_of_gravity(image: sitk.Image) -> np.ndarray:
    """Intensity-weighted mean voxel position (LPS), as ITK's ImageMomentsCalculator computes it."""
    array = sitk.GetArrayViewFromImage(image)
    total = float(np.sum(array, dtype=np.float64))
    if not total > 0:
        return image_center(image)
    index = [float(np.dot(np.arange(array.shape[2 - axis]),
                          np.sum(array, axis=tuple(a for a in range(3) if a != 2 - axis), dtype=np.float64)))
             / total for axis in range(3)]
    return apply_matrix(index_to_physical_matrix(image), np.array([index]))[0]


class BrainsFitExecutable:
    """BRAINSFit run as a program: images and transforms through temporary files, a cancellable run."""

    def __init__(self, command) -> None:
        self.command = list(command) if not isinstance(command, (str, Path)) else [str(command)]

    def run(self, fixed, moving, initial, parameters, progress: Progress):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mkr-brainsfit-") as folder:
            files = {name: str(Path(folder) / name) for name in ("fixed.nrrd", "moving.nrrd", "initial.tfm",
                                                                 "result.tfm")}
            sitk.WriteImage(fixed, files["fixed.nrrd"])
            sitk.WriteImage(moving, files["moving.nrrd"])
            sitk.WriteTransform(initial, files["initial.tfm"])
            arguments = {**parameters, "fixedVolume": files["fixed.nrrd"], "movingVolume": files["moving.nrrd"],
                         "initialTransform": files["initial.tfm"], "linearTransform": files["result.tfm"]}
            output = run_external(self.command + command_line_arguments(arguments), "BRAINSFit", progress)
            if not Path(files["result.tfm"]).is_file():
                raise EngineError("BRAINSFit ended without writing its transform",
                                  "rerun with --debug to see its output, or use the SimpleITK engine")
            return _read_linear(files["result.tfm"]), output


def command_line_arguments(parameters: dict) -> list:
    """BRAINSFit.xml parameters as command-line flags (booleans are bare flags, vectors comma-joined)."""
    arguments = []
    for name, value in parameters.items():
        if isinstance(value, bool):
            arguments += [f"--{name}"] if value else []
        elif isinstance(value, (list, tuple)):
            arguments += [f"--{name}", ",".join(str(v) for v in value)]
        else:
            arguments += [f"--{name}", str(value)]
    return arguments


def find_brainsfit(explicit: Optional[str] = None) -> list:
    """The command that runs BRAINSFit: ``explicit``, ``$BRAINSFIT``, ``PATH``, or a Slicer install.

    A BRAINSFit inside a Slicer install needs Slicer's libraries, so it is run through Slicer's
    launcher (``Slicer --launch BRAINSFit``). Raises ``EngineError`` saying where to get one.
    """
    for candidate in (explicit, os.environ.get("BRAINSFIT"), shutil.which("BRAINSFit")):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise EngineError(f"BRAINSFit '{path}' is not an executable file",
                                  "check the path given with --brainsfit (or $BRAINSFIT), or use the SimpleITK engine")
            return _launched(path)
    for root in (os.environ.get("SLICER_HOME"), *_SLICER_ROOT_GLOBS):
        for folder in sorted(glob.glob(os.path.expanduser(root or "")), reverse=True):
            for pattern in _SLICER_CLI_GLOBS:
                found = sorted(glob.glob(os.path.join(folder, pattern)), reverse=True)
                if found:
                    return _launched(Path(found[0]))
    raise EngineError(
        "BRAINSFit was not found",
        "give its path with --brainsfit PATH (or $BRAINSFIT), put it on PATH, or install 3D Slicer, which "
        "ships it as lib/Slicer-X.Y/cli-modules/BRAINSFit; or use the SimpleITK engine",
    )


def _launched(path: Path) -> list:
    launcher = path.parents[3] / "Slicer" if len(path.parents) > 3 else None
    if path.parent.name == "cli-modules" and launcher is not None and launcher.is_file():
        return [str(launcher), "--launch", str(path)]
    return [str(path)]


def _read_linear(path: str) -> sitk.Transform:
    transform = sitk.ReadTransform(path)
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return transform


def _stop_condition(output_text: str) -> str:
    """BRAINSFit's last words about convergence, if it printed any."""
    lines = [line.strip() for line in (output_text or "").splitlines() if line.strip()]
    stops = [line for line in lines if "stop" in line.lower() or "converge" in line.lower()]
    return (stops[-1] if stops else (lines[-1] if lines else "BRAINSFit completed"))[:200]
