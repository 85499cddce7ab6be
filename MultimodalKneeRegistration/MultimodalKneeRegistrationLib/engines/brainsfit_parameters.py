"""The BRAINSFit parameters that reproduce a registration plan, keyed exactly as in BRAINSFit.xml.

Why: the forum user's BRAINSFit runs failed on defaults (``samplingPercentage`` 0.002, geometry
initialisation, 1500 iterations at 0.2 mm steps). The plan already knows the right values; this
module writes them in BRAINSFit's own vocabulary, as the dictionary ``slicer.cli.run(
slicer.modules.brainsfit, None, parameters)`` takes. It is pure (no Slicer import) so the mapping is
tested outside Slicer; the runner adds the data (node IDs in Slicer, file paths outside).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import InputError
from ..settings import TRANSFORM_STAGES

#: The data BRAINSFit reads and writes: the runner names them (node IDs or file paths).
DATA_PARAMETERS = ("fixedVolume", "movingVolume", "initialTransform", "linearTransform")
#: Parameter names (``<name>`` elements of BRAINSFit.xml) this module emits, with the runner's data.
BRAINSFIT_PARAMETER_NAMES = frozenset(
    {
        *DATA_PARAMETERS,
        "initializeTransformMode",
        "useRigid",
        "useScaleVersor3D",
        "useAffine",
        "samplingPercentage",
        "numberOfIterations",
        "numberOfHistogramBins",
        "maskProcessingMode",
        "maximumStepLength",
        "minimumStepLength",
        "relaxationFactor",
        "translationScale",
        "costMetric",
        "numberOfThreads",
        "histogramMatch",
    }
)
#: ``initializeTransformMode`` values BRAINSFit accepts.
BRAINSFIT_INITIALIZE_MODES = (
    "Off",
    "useMomentsAlign",
    "useCenterOfHeadAlign",
    "useGeometryAlign",
    "useCenterOfROIAlign",
)
#: Our stage name -> BRAINSFit's boolean flag that switches the stage on.
STAGE_FLAGS = {"Rigid": "useRigid", "ScaleVersor3D": "useScaleVersor3D", "Affine": "useAffine"}
#: BRAINSFit's own default (1 radian weighs like 1000 mm); kept explicit so a run is reproducible.
TRANSLATION_SCALE = 1000.0
#: BRAINSFit's own step lengths (BRAINSFit.xml defaults). For its rigid stages these are unitless
#: steps of the regular-step optimiser over scaled versor and translation parameters (scales 1 and
#: 1/translationScale, ``BRAINSCommonLib/genericRegistrationHelper.hxx``), not millimetres: the
#: SimpleITK engine's ``max_step_mm`` (2.0) sent here was 40x BRAINSFit's default.
MAXIMUM_STEP_LENGTH = 0.05
MINIMUM_STEP_LENGTH = 0.001
RELAXATION_FACTOR = 0.5
#: BRAINSFit's own iteration cap (its default). Its regular-step descent stops by itself once the step
#: falls below ``minimumStepLength``; the cap only has to be high enough not to cut that short, so the
#: plan's count (15 Powell sweeps for the SimpleITK engine) is used only when it is larger.
BRAINSFIT_ITERATION_CAP = 1500


def brainsfit_parameters(
    plan,
    *,
    from_initial_transform: bool = True,
    fixed_voxel_count: Optional[int] = None,
) -> Dict[str, Any]:
    """BRAINSFit parameters (BRAINSFit.xml names) for ``plan``, all but the data it reads and writes.

    The runner adds the data names (``DATA_PARAMETERS``) in its own terms: MRML node IDs for
    ``slicer.cli.run``, file paths for a command line. ``fixed_voxel_count`` is the number of voxels
    of the fixed image *as handed to BRAINSFit* (after cropping/downsampling): BRAINSFit samples a
    fraction of the fixed voxels, so the plan's sample count is turned into that fraction here.
    ``from_initial_transform``: the runner passes our start as ``initialTransform``, so
    ``initializeTransformMode`` is "Off" (BRAINSFit rejects a transform plus a mode); without one the
    plan's BRAINSFit mode is used.

    Example:
        >>> params = brainsfit_parameters(plan, fixed_voxel_count=2_000_000)  # doctest: +SKIP
        >>> params["initializeTransformMode"], params["samplingPercentage"]  # doctest: +SKIP
        ('Off', 0.05)
    """
    _check_stages(plan)
    stages = tuple(plan.optimizer.transform_stages)
    parameters: Dict[str, Any] = {
        "initializeTransformMode": _initialize_mode(plan.initialize_transform_mode, from_initial_transform),
        "samplingPercentage": _sampling_fraction(plan, fixed_voxel_count),
        "numberOfIterations": max(int(plan.optimizer.number_of_iterations), BRAINSFIT_ITERATION_CAP),
        "numberOfHistogramBins": int(plan.number_of_histogram_bins),
        "maximumStepLength": MAXIMUM_STEP_LENGTH,
        "minimumStepLength": MINIMUM_STEP_LENGTH,
        "relaxationFactor": RELAXATION_FACTOR,
        "translationScale": TRANSLATION_SCALE,
        "costMetric": "MMI",
        "histogramMatch": False,
        "maskProcessingMode": "NOMASK",
        "numberOfThreads": _threads(plan.execution),
    }
    for stage, flag in STAGE_FLAGS.items():
        parameters[flag] = stage in stages
    return parameters


def _check_stages(plan) -> None:
    stages = tuple(plan.optimizer.transform_stages)
    if not stages or any(s not in STAGE_FLAGS for s in stages):
        raise InputError(f"transform stages {stages!r} cannot be run by BRAINSFit",
                         f"use stages from {', '.join(TRANSFORM_STAGES)}")


def _initialize_mode(plan_mode: str, from_initial_transform: bool) -> str:
    if from_initial_transform:
        return "Off"
    if plan_mode == "search":
        raise InputError(
            "the 'search' initialisation runs before BRAINSFit, not inside it",
            "run initialize_transform() first and pass its result as initial_transform",
        )
    if plan_mode not in BRAINSFIT_INITIALIZE_MODES:
        raise InputError(
            f"BRAINSFit has no initializeTransformMode {plan_mode!r}",
            f"use one of {', '.join(BRAINSFIT_INITIALIZE_MODES)}",
        )
    return plan_mode


def _threads(execution) -> int:
    """One thread when results must repeat (BRAINSFit's Mattes sums are threaded), else the user's count."""
    if execution.deterministic:
        return 1
    return int(execution.number_of_threads) if execution.number_of_threads else -1


def _sampling_fraction(plan, fixed_voxel_count: Optional[int]) -> float:
    """The fraction of BRAINSFit's fixed voxels that gives the plan's number of metric samples."""
    if fixed_voxel_count is None:
        fraction = float(plan.sampling_percentage)
    else:
        if fixed_voxel_count < 1:
            raise InputError("the fixed image handed to BRAINSFit has no voxels", "check the crop region")
        fraction = float(plan.metric_samples) / float(fixed_voxel_count)
    if not fraction > 0.0:
        raise InputError("the plan samples no voxels", "raise sampling_percentage or min_metric_samples")
    return round(min(1.0, fraction), 6)
