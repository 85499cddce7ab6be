"""ITKv4 registration through SimpleITK, mirroring BRAINSFit's parameters.

Why: this is the engine that runs outside Slicer and in CI. Like BRAINSFit it uses Mattes mutual
information, a regular-step gradient descent and versor rigid -> scale versor -> affine stages;
unlike BRAINSFit's defaults it samples enough points (the plan's ``sampling_percentage``), works on
a multi-resolution pyramid, and uses a fixed random seed so that a run can be repeated exactly.
"""

from __future__ import annotations

import time
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError, RegistrationFailedError
from ..results import StageResult
from .base import (
    CancelCheck,
    EngineOutput,
    ProgressCallback,
    execute_threads,
    global_threads,
    mattes_value,
    new_registration_method,
    without_gradient_images,
)

#: Stage -> (transform factory from the previous stage's transform, pyramid levels it uses).
_AFFINE_LEVELS = 2
#: Samples of the referee metric that picks among endpoints (all voxels below this count).
_REFEREE_SAMPLES = 1_500_000


def _stage_transform(stage: str, previous: sitk.Transform) -> sitk.Transform:
    if stage == "Rigid":
        return sitk.VersorRigid3DTransform(previous)
    if stage == "ScaleVersor3D":
        scale_versor = sitk.ScaleVersor3DTransform()
        rigid = (
            sitk.VersorRigid3DTransform(previous) if previous.GetName() == "VersorRigid3DTransform" else None
        )
        if rigid is not None:
            scale_versor.SetCenter(rigid.GetCenter())
            scale_versor.SetRotation(rigid.GetVersor())
            scale_versor.SetTranslation(rigid.GetTranslation())
        return scale_versor
    affine = sitk.AffineTransform(3)
    matrix_source = previous
    affine.SetCenter(matrix_source.GetCenter() if hasattr(matrix_source, "GetCenter") else (0, 0, 0))
    affine.SetMatrix(matrix_source.GetMatrix())
    affine.SetTranslation(matrix_source.GetTranslation())
    return affine


def _typed(transform: sitk.Transform) -> sitk.Transform:
    """Concrete typed copy of a transform handed back by ``Execute``."""
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    name = transform.GetName()
    factory = {
        "VersorRigid3DTransform": sitk.VersorRigid3DTransform,
        "ScaleVersor3DTransform": sitk.ScaleVersor3DTransform,
        "AffineTransform": sitk.AffineTransform,
    }[name]
    return factory(transform)


class SimpleITKEngine:
    """Mattes MI + Powell (rigid) or conjugate gradients / regular-step descent, stage by stage."""

    name = "SimpleITK"

    def run(
        self,
        fixed: sitk.Image,
        moving: sitk.Image,
        initial: sitk.Transform,
        plan,
        settings,
        progress: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
    ) -> EngineOutput:
        transform: sitk.Transform = _centred_on_object(initial, fixed)
        stages: List[StageResult] = []
        count = len(plan.transform_stages)
        for number, stage in enumerate(plan.transform_stages):
            levels = (
                len(plan.shrink_factors)
                if stage == "Rigid"
                else min(_AFFINE_LEVELS, len(plan.shrink_factors))
            )
            began = time.perf_counter()
            rounds = _sample_rounds(stage, plan, settings)
            endpoints = []
            iterations = 0
            for round_number in range(rounds):
                # Later rounds only polish at the finest level, each on a fresh random sample set.
                transform, stop, metric_value, used = self._optimise(
                    fixed, moving, transform, plan, settings, stage,
                    levels=levels if round_number == 0 else 1,
                    seed=settings.random_seed + round_number,
                    observe=(progress, should_cancel, number + round_number / rounds, count),
                )
                iterations += used
                endpoints.append((transform, stop, metric_value))
            referee = _Referee(fixed, moving, plan, settings)
            restarts = _rotation_restarts(stage, referee.best(endpoints)[0], settings)
            for restart_number, restart in enumerate(restarts):
                *endpoint, used = self._optimise(
                    fixed, moving, restart, plan, settings, stage, levels=1,
                    seed=settings.random_seed + rounds + restart_number,
                    observe=(progress, should_cancel, number + 1.0 - 1.0 / rounds, count),
                )
                iterations += used
                endpoints.append(tuple(endpoint))
            transform, stop, metric_value = referee.best(endpoints)
            if restarts:
                stop = (
                    f"best of {rounds} sample sets and {len(restarts)} restarts turned "
                    f"{settings.rotation_restarts_deg:g} deg, by the dense metric; last: {stop}"
                )
            elif rounds > 1:
                stop = f"best of {rounds} sample sets by the dense metric; last round: {stop}"
            stages.append(
                StageResult(
                    name=stage,
                    iterations=iterations,
                    stop_condition=stop,
                    metric_value=metric_value,
                    seconds=time.perf_counter() - began,
                )
            )
        return EngineOutput(transform=transform, stages=stages)

    def _optimise(self, fixed, moving, start, plan, settings, stage, levels, seed, observe):
        """One optimisation of ``stage`` from ``start``: (transform, stop condition, metric, iterations)."""
        progress, should_cancel, number, count = observe
        method = self._method(fixed, plan, settings, levels, stage, seed=seed)
        method.SetInitialTransform(_stage_transform(stage, start), inPlace=False)
        cancelled = self._observe(method, progress, should_cancel, number, count, stage, plan)
        try:
            with global_threads(execute_threads(settings, uses_gradient=not _is_powell(stage, settings))):
                result = method.Execute(fixed, moving)
        except RuntimeError as error:
            raise RegistrationFailedError(
                f"the {stage} stage could not evaluate the metric ({_short(error)})",
                "the images barely overlap at this pose: give an initial transform or use the "
                "'search' initialisation",
            ) from None
        if cancelled[0]:
            raise CancelledError(f"registration cancelled during the {stage} stage", "nothing was written")
        return (
            _typed(result),
            method.GetOptimizerStopConditionDescription(),
            float(method.GetMetricValue()),
            int(method.GetOptimizerIteration()),
        )

    @staticmethod
    def _method(
        fixed: sitk.Image, plan, settings, levels: int, stage: str, seed: Optional[int] = None
    ) -> sitk.ImageRegistrationMethod:
        shrink = list(plan.shrink_factors)[-levels:]
        sigmas = list(plan.smoothing_sigmas_mm)[-levels:]
        voxels = float(np.prod(fixed.GetSize()))
        wanted = plan.sampling_percentage * voxels
        per_level = [float(min(1.0, wanted / max(1.0, voxels / f**3))) for f in shrink]
        method = new_registration_method(settings)
        method.SetMetricAsMattesMutualInformation(plan.number_of_histogram_bins)
        if min(per_level) >= 1.0:  # every voxel: no sampling noise at all
            method.SetMetricSamplingStrategy(method.NONE)
        else:
            method.SetMetricSamplingStrategy(method.RANDOM)
            method.SetMetricSamplingPercentagePerLevel(
                per_level, settings.random_seed if seed is None else seed
            )
        method.SetInterpolator(sitk.sitkLinear)
        if _is_powell(stage, settings):
            without_gradient_images(method)
            method.SetOptimizerAsPowell(
                numberOfIterations=settings.powell_sweeps,
                maximumLineIterations=settings.powell_line_iterations,
                stepLength=settings.max_step_mm,
                stepTolerance=settings.powell_step_tolerance,
                valueTolerance=settings.powell_value_tolerance,
            )
        elif settings.optimizer == "RegularStepGradientDescent":
            method.SetOptimizerAsRegularStepGradientDescent(
                learningRate=settings.max_step_mm,
                minStep=settings.min_step_mm,
                numberOfIterations=plan.number_of_iterations,
                relaxationFactor=settings.relaxation_factor,
                gradientMagnitudeTolerance=1e-12,
            )
        else:
            method.SetOptimizerAsConjugateGradientLineSearch(
                learningRate=1.0,
                numberOfIterations=plan.number_of_iterations,
                convergenceMinimumValue=1e-6,
                convergenceWindowSize=10,
                lineSearchLowerLimit=0.0,
                lineSearchUpperLimit=3.0,
                lineSearchEpsilon=0.05,
                lineSearchMaximumIterations=8,
                estimateLearningRate=method.Once,
                maximumStepSizeInPhysicalUnits=settings.max_step_mm,
            )
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(shrink)
        method.SetSmoothingSigmasPerLevel(sigmas)
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return method

    @staticmethod
    def _observe(method, progress, should_cancel, number, count, stage, plan) -> list:
        cancelled = [False]
        state = {"level": 0}
        levels = len(plan.shrink_factors)

        def on_iteration() -> None:
            if should_cancel is not None and should_cancel():
                cancelled[0] = True
                method.StopRegistration()
            if progress is not None:
                within = min(1.0, method.GetOptimizerIteration() / max(1, plan.number_of_iterations))
                done = (number + (state["level"] + within) / levels) / count
                progress(
                    done,
                    f"{stage}: level {state['level'] + 1}, iteration {method.GetOptimizerIteration()}, "
                    f"metric {method.GetMetricValue():.4f}",
                )

        def on_level() -> None:
            state["level"] = int(method.GetCurrentLevel())

        method.AddCommand(sitk.sitkIterationEvent, on_iteration)
        method.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)
        return cancelled


def _is_powell(stage: str, settings) -> bool:
    """Powell runs the rigid stage when asked; 12-parameter stages always use conjugate gradients."""
    return stage == "Rigid" and settings.optimizer == "Powell"


def _sample_rounds(stage: str, plan, settings) -> int:
    """How many sample sets the stage is optimised on (Powell's rigid stage, when it samples)."""
    if _is_powell(stage, settings) and plan.sampling_percentage < 1.0:
        return max(1, int(settings.resample_rounds))
    return 1


def _rotation_restarts(stage: str, transform: sitk.Transform, settings) -> List[sitk.Transform]:
    """The rigid result turned +/- ``rotation_restarts_deg`` about each axis through its centre.

    Why: a fine micro-CT against MRI slices has rotational local optima a few degrees apart. On the
    porcine micro-CT cube the rigid stage stopped 3.5 deg off (Mattes MI -0.40); three of these six
    restarts reached the deeper optimum (-0.55, 1.4 mm from the reference instead of 1.7 mm).
    """
    if stage != "Rigid" or settings.rotation_restarts_deg <= 0:
        return []
    from ..geometry import rotation_matrix, transform_to_matrix
    from ..initialization import rigid_from_matrix

    center = np.array(transform.GetCenter()) if hasattr(transform, "GetCenter") else np.zeros(3)
    matrix = transform_to_matrix(transform)
    restarts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            turn = np.eye(4)
            turn[:3, :3] = rotation_matrix(np.eye(3)[axis] * sign * np.radians(settings.rotation_restarts_deg))
            turn[:3, 3] = center - turn[:3, :3] @ center
            restarts.append(rigid_from_matrix(matrix @ turn, center))
    return restarts


class _Referee:
    """Picks the endpoint that scores best on a dense (all-voxel or large) referee sample.

    Why: every random sample set carries its own shallow, spurious optima; on the porcine pair the
    endpoint moved by 1-2 mm with the seed. Re-optimising on a fresh set escapes them, and an
    independent, denser evaluation picks the endpoint without trusting any one sample set. Each
    endpoint is scored once, however often ``best`` is asked (before and after the restarts).
    """

    def __init__(self, fixed, moving, plan, settings) -> None:
        self.fixed, self.moving, self.plan, self.settings = fixed, moving, plan, settings
        self._scores: dict = {}

    def best(self, endpoints):
        if len(endpoints) == 1:
            return endpoints[0]
        scores = [self._score(endpoint[0]) for endpoint in endpoints]
        return endpoints[int(np.argmin(scores))]

    def _score(self, transform) -> float:
        if id(transform) not in self._scores:
            voxels = float(np.prod(self.fixed.GetSize()))
            fraction = None if voxels <= _REFEREE_SAMPLES else _REFEREE_SAMPLES / voxels
            value = mattes_value(self.fixed, self.moving, transform, self.settings,
                                 self.plan.number_of_histogram_bins, fraction, self.settings.random_seed - 1)
            # Kept with its transform, so the id is not reused; no overlap at an endpoint: never the best.
            self._scores[id(transform)] = (transform, np.inf if value is None else value)
        return self._scores[id(transform)][1]


def _centred_on_object(initial: sitk.Transform, fixed: sitk.Image) -> sitk.VersorRigid3DTransform:
    """Same pose, rotation centre on the sampled object's centroid: rotations then barely move
    the object as a whole, which decouples them from translations for the optimiser."""
    from ..geometry import transform_to_matrix
    from ..initialization import foreground_centroid, rigid_from_matrix

    return rigid_from_matrix(transform_to_matrix(initial), foreground_centroid(fixed))


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    last = [line for line in text if line.strip()][-1] if text else ""
    return last.split("ITK ERROR:")[-1].strip()[:160]
