"""ITKv4 registration through SimpleITK: the engine that runs everywhere (outside Slicer, in CI).

Why: like BRAINSFit it uses Mattes mutual information and versor rigid -> scale versor -> affine
stages; unlike BRAINSFit's defaults it samples enough points (the plan's ``sampling_percentage``),
optimises the rigid stage with Powell (no gradient: rough MI valleys stall gradient methods), polishes
on fresh sample sets and lets a dense referee metric pick the endpoint, with a fixed random seed so
that a run can be repeated exactly. It reads only the plan.

With a ``mask`` (one bone, ``bones.bone_registration``) the metric and the referee sample the fixed
image only inside it (ITKv4's fixed-image mask, as BRAINSFit's ``maskProcessingMode ROI``), and as
many points land inside it as the plan asks for the whole image.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import RegistrationFailedError
from ..execution import (
    execute_threads,
    global_threads,
    new_registration_method,
    stop_on_cancel,
    without_gradient_images,
)
from ..geometry import (
    corner_points,
    mask_on_grid,
    point_distances,
    rigid_from_matrix,
    transform_to_matrix,
    turned_about,
)
from ..progress import Progress
from ..results import StageResult
from ..search.initialization import foreground_centroid
from ..steps.metrics import mattes_value
from .base import EngineOutput

#: Pyramid levels the scale and affine stages use at most.
_AFFINE_LEVELS = 2
#: Samples of the referee metric that picks among endpoints (all voxels below this count).
_REFEREE_SAMPLES = 1_500_000
#: A sample-set round that moves the pose less than this (mm, at the sampled image's corners) from
#: the round before ends the rounds: the sample sets agree. Measured: on the 48 mm micro-CT cube the
#: second round moved it 0.15 mm and the third 0.07 mm (1 s each); on the porcine pair 0.6-1.0 mm,
#: where the third round still counts.
ROUNDS_AGREE_MM = 0.25


class SimpleITKEngine:
    """Mattes MI + Powell (rigid) or conjugate gradients / regular-step descent, stage by stage."""

    name = "SimpleITK"
    takes_mask = True

    def run(
        self, fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, plan, progress: Progress,
        mask: Optional[sitk.Image] = None,
    ) -> EngineOutput:
        sampling = _Sampling(fixed, mask)
        transform: sitk.Transform = _centred_on_object(initial, fixed, sampling)
        stages: List[StageResult] = []
        for stage, stage_progress in zip(plan.optimizer.transform_stages,
                                         progress.split(len(plan.optimizer.transform_stages))):
            began = time.perf_counter()
            transform, stop, metric_value, iterations = _run_stage(
                fixed, moving, transform, plan, stage, stage_progress, sampling
            )
            stages.append(StageResult(stage, iterations, stop, metric_value, time.perf_counter() - began,
                                      endpoint=transform))
        return EngineOutput(transform=transform, stages=stages)


def _run_stage(fixed, moving, transform, plan, stage: str, progress: Progress, sampling: _Sampling):
    """One stage: its sample-set rounds, rotation restarts, and the referee's pick among the endpoints."""
    levels = len(plan.shrink_factors) if stage == "Rigid" else min(_AFFINE_LEVELS, len(plan.shrink_factors))
    rounds = _sample_rounds(stage, plan)
    restart_count = 6 if stage == "Rigid" and plan.optimizer.rotation_restarts_deg > 0 else 0
    parts = progress.split(rounds + restart_count)
    endpoints, iterations, corners = [], 0, corner_points(fixed)
    for round_number in range(rounds):
        # Later rounds only polish at the finest level, each on a fresh random sample set.
        transform, stop, metric_value, used = _optimise(
            fixed, moving, transform, plan if round_number == 0 else _later_round(plan), stage, sampling,
            levels=levels if round_number == 0 else 1, seed=plan.optimizer.random_seed + round_number,
            progress=parts[round_number], label=f"{stage}: round {round_number + 1} of {rounds}",
        )
        iterations += used
        endpoints.append((transform, stop, metric_value))
        if round_number > 0 and point_distances(endpoints[-2][0], transform, corners).max() < ROUNDS_AGREE_MM:
            break  # two sample sets agree: a third would be picked among the same pose
    referee = _Referee(fixed, moving, plan, sampling)
    restarts = _rotation_restarts(stage, referee.best(endpoints)[0], plan.optimizer)
    for number, restart in enumerate(restarts):
        *endpoint, used = _optimise(
            fixed, moving, restart, plan, stage, sampling, levels=1, seed=plan.optimizer.random_seed + rounds + number,
            progress=parts[rounds + number], label=f"{stage}: restart {number + 1} of {len(restarts)}",
        )
        iterations += used
        endpoints.append(tuple(endpoint))
    transform, stop, metric_value = referee.best(endpoints)
    if restarts:
        stop = (
            f"best of {rounds} sample sets and {len(restarts)} restarts turned "
            f"{plan.optimizer.rotation_restarts_deg:g} deg, by the dense metric; last: {stop}"
        )
    elif len(endpoints) > 1:
        agreed = f" (the last two within {ROUNDS_AGREE_MM:g} mm)" if len(endpoints) < rounds else ""
        stop = f"best of {len(endpoints)} sample sets by the dense metric{agreed}; last round: {stop}"
    progress.done(f"{stage}: done")
    return transform, stop, metric_value, iterations


def _later_round(plan):
    """The plan for a sample-set round after the first: Powell stops at the looser of the two value
    tolerances (``powell_round_value_tolerance``)."""
    optimizer = plan.optimizer
    tolerance = max(optimizer.powell_value_tolerance, optimizer.powell_round_value_tolerance)
    return replace(plan, optimizer=replace(optimizer, powell_value_tolerance=tolerance))


def _optimise(fixed, moving, start, plan, stage, sampling: _Sampling, levels, seed, progress: Progress,
              label: str):
    """One optimisation of ``stage`` from ``start``: (transform, stop condition, metric, iterations)."""
    method = _method(plan, sampling, levels, stage, seed)
    method.SetInitialTransform(_stage_transform(stage, start), inPlace=False)
    limit = plan.optimizer.powell_sweeps if _is_powell(stage, plan) else plan.optimizer.number_of_iterations
    level = {"number": 0}
    method.AddCommand(sitk.sitkMultiResolutionIterationEvent,
                      lambda: level.update(number=int(method.GetCurrentLevel())))

    def fraction() -> float:
        within = min(1.0, method.GetOptimizerIteration() / max(1, limit))
        return (level["number"] + within) / levels

    stopped = stop_on_cancel(method, progress, fraction, label)
    try:
        with global_threads(execute_threads(plan.execution, uses_gradient=not _is_powell(stage, plan))):
            result = method.Execute(fixed, moving)
    except RuntimeError as error:
        raise RegistrationFailedError(
            f"the {stage} stage could not evaluate the metric ({_short(error)})",
            "the images barely overlap at this pose: give an initial transform or use the 'search' initialisation",
        ) from None
    if stopped[0]:
        progress.check_cancel(f"during the {stage} stage")
    return (
        _typed(result),
        method.GetOptimizerStopConditionDescription(),
        float(method.GetMetricValue()),
        int(method.GetOptimizerIteration()),
    )


class _Sampling:
    """Where the metric samples the fixed image: every voxel's share, or only those inside ``mask``.

    Why a count: ITK draws random samples over the whole image and drops those outside the mask, so
    a masked metric asks for the plan's number of samples as a share of the voxels inside it.
    """

    def __init__(self, fixed: sitk.Image, mask: Optional[sitk.Image]) -> None:
        self.mask = mask
        self.voxels = float(np.prod(fixed.GetSize()))
        self.inside, self.centroid = self.voxels, None
        if mask is not None:
            self.inside = float(np.count_nonzero(mask_on_grid(mask, fixed)))
            stats = sitk.LabelShapeStatisticsImageFilter()
            stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
            self.centroid = np.array(stats.GetCentroid(1)) if stats.HasLabel(1) else None

    def fraction(self, plan, shrink: int = 1) -> float:
        """The sampling percentage that puts the plan's samples inside (1: every voxel)."""
        wanted = plan.sampling_percentage * self.voxels
        return float(min(1.0, wanted / max(1.0, self.inside / shrink**3)))


def _method(plan, sampling: _Sampling, levels: int, stage: str, seed: int) -> sitk.ImageRegistrationMethod:
    shrink = list(plan.shrink_factors)[-levels:]
    sigmas = list(plan.smoothing_sigmas_mm)[-levels:]
    per_level = [sampling.fraction(plan, f) for f in shrink]
    method = new_registration_method(plan.execution)
    method.SetMetricAsMattesMutualInformation(plan.number_of_histogram_bins)
    if sampling.mask is not None:
        method.SetMetricFixedMask(sampling.mask)
    if min(per_level) >= 1.0:  # every voxel: no sampling noise at all
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentagePerLevel(per_level, seed)
    method.SetInterpolator(sitk.sitkLinear)
    _set_optimizer(method, plan, stage)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _set_optimizer(method: sitk.ImageRegistrationMethod, plan, stage: str) -> None:
    optimizer = plan.optimizer
    if _is_powell(stage, plan):
        without_gradient_images(method)
        method.SetOptimizerAsPowell(
            numberOfIterations=optimizer.powell_sweeps,
            maximumLineIterations=optimizer.powell_line_iterations,
            stepLength=optimizer.max_step_mm,
            stepTolerance=optimizer.powell_step_tolerance,
            valueTolerance=optimizer.powell_value_tolerance,
        )
    elif optimizer.method == "RegularStepGradientDescent":
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=optimizer.max_step_mm,
            minStep=optimizer.min_step_mm,
            numberOfIterations=optimizer.number_of_iterations,
            relaxationFactor=optimizer.relaxation_factor,
            gradientMagnitudeTolerance=1e-12,
        )
    else:
        method.SetOptimizerAsConjugateGradientLineSearch(
            learningRate=1.0,
            numberOfIterations=optimizer.number_of_iterations,
            convergenceMinimumValue=1e-6,
            convergenceWindowSize=10,
            lineSearchLowerLimit=0.0,
            lineSearchUpperLimit=3.0,
            lineSearchEpsilon=0.05,
            lineSearchMaximumIterations=8,
            estimateLearningRate=method.Once,
            maximumStepSizeInPhysicalUnits=optimizer.max_step_mm,
        )


def _stage_transform(stage: str, previous: sitk.Transform) -> sitk.Transform:
    """The stage's own transform type, starting where ``previous`` ended."""
    if stage == "Rigid":
        return sitk.VersorRigid3DTransform(previous)
    if stage == "ScaleVersor3D":
        scale_versor = sitk.ScaleVersor3DTransform()
        if previous.GetName() == "VersorRigid3DTransform":
            rigid = sitk.VersorRigid3DTransform(previous)
            scale_versor.SetCenter(rigid.GetCenter())
            scale_versor.SetRotation(rigid.GetVersor())
            scale_versor.SetTranslation(rigid.GetTranslation())
        return scale_versor
    affine = sitk.AffineTransform(3)
    affine.SetCenter(previous.GetCenter() if hasattr(previous, "GetCenter") else (0, 0, 0))
    affine.SetMatrix(previous.GetMatrix())
    affine.SetTranslation(previous.GetTranslation())
    return affine


def _typed(transform: sitk.Transform) -> sitk.Transform:
    """Concrete typed copy of a transform handed back by ``Execute``."""
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    factory = {
        "VersorRigid3DTransform": sitk.VersorRigid3DTransform,
        "ScaleVersor3DTransform": sitk.ScaleVersor3DTransform,
        "AffineTransform": sitk.AffineTransform,
    }[transform.GetName()]
    return factory(transform)


def _is_powell(stage: str, plan) -> bool:
    """Powell runs the rigid stage when asked; 12-parameter stages always use conjugate gradients."""
    return stage == "Rigid" and plan.optimizer.method == "Powell"


def _sample_rounds(stage: str, plan) -> int:
    """How many sample sets the stage is optimised on (Powell's rigid stage, when it samples)."""
    if _is_powell(stage, plan) and plan.sampling_percentage < 1.0:
        return max(1, int(plan.optimizer.resample_rounds))
    return 1


def _rotation_restarts(stage: str, transform: sitk.Transform, optimizer) -> List[sitk.Transform]:
    """The rigid result turned +/- ``rotation_restarts_deg`` about each axis through its centre.

    Why: a fine micro-CT against MRI slices has rotational local optima a few degrees apart. On the
    porcine micro-CT cube the rigid stage stopped 3.5 deg off (Mattes MI -0.40); three of these six
    restarts reached the deeper optimum (-0.55, 1.4 mm from the reference instead of 1.7 mm).
    """
    if stage != "Rigid" or optimizer.rotation_restarts_deg <= 0:
        return []
    center = np.array(transform.GetCenter()) if hasattr(transform, "GetCenter") else np.zeros(3)
    matrix = transform_to_matrix(transform)
    angle = np.radians(optimizer.rotation_restarts_deg)
    return [
        rigid_from_matrix(turned_about(matrix, np.eye(3)[axis] * sign * angle, center), center)
        for axis in range(3)
        for sign in (-1.0, 1.0)
    ]


class _Referee:
    """Picks the endpoint that scores best on a dense (all-voxel or large) referee sample.

    Why: every random sample set carries its own shallow, spurious optima; on the porcine pair the
    endpoint moved by 1-2 mm with the seed. Re-optimising on a fresh set escapes them, and an
    independent, denser evaluation picks the endpoint without trusting any one sample set. Each
    endpoint is scored once, however often ``best`` is asked (before and after the restarts).
    """

    def __init__(self, fixed, moving, plan, sampling: _Sampling) -> None:
        self.fixed, self.moving, self.plan, self.sampling = fixed, moving, plan, sampling
        self._scores: dict = {}

    def best(self, endpoints):
        if len(endpoints) == 1:
            return endpoints[0]
        scores = [self._score(endpoint[0]) for endpoint in endpoints]
        return endpoints[int(np.argmin(scores))]

    def _score(self, transform) -> float:
        if id(transform) not in self._scores:
            inside = self.sampling.inside
            fraction = None if inside <= _REFEREE_SAMPLES else _REFEREE_SAMPLES / inside
            value = mattes_value(self.fixed, self.moving, transform, self.plan.execution,
                                 self.plan.number_of_histogram_bins, fraction, self.plan.optimizer.random_seed - 1,
                                 mask=self.sampling.mask)
            # Kept with its transform, so the id is not reused; no overlap at an endpoint: never the best.
            self._scores[id(transform)] = (transform, np.inf if value is None else value)
        return self._scores[id(transform)][1]


def _centred_on_object(initial: sitk.Transform, fixed: sitk.Image, sampling: _Sampling) -> sitk.VersorRigid3DTransform:
    """Same pose, rotation centre on the sampled object's centroid (the mask's, with one): rotations
    then barely move the object as a whole, which decouples them from translations for the optimiser."""
    centre = sampling.centroid if sampling.centroid is not None else foreground_centroid(fixed)
    return rigid_from_matrix(transform_to_matrix(initial), centre)


def _short(error: Exception) -> Optional[str]:
    text = str(error).strip().splitlines()
    last = [line for line in text if line.strip()][-1] if text else ""
    return last.split("ITK ERROR:")[-1].strip()[:160]
