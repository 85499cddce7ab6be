"""One bone's rigid registration: planned and prepared like the whole volume, scored inside its mask.

Why: a bone is a small, well-defined part of the image; the whole-volume result is a good start but
a compromise between bones. The bone's region is planned (``steps.planning``) and prepared
(``steps.preprocessing``) as a whole registration would be, a few rotations about the bone's centre
are scored with the masked form of the search's scorer, the best starts are refined with a
gradient method on a coarse pyramid, and Powell polishes the winner at full working resolution.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..execution import execute_threads, global_threads, new_registration_method, stop_on_cancel
from ..geometry import Box, apply_matrix, as_versor, rigid_from_matrix, transform_to_matrix, turned_about
from ..progress import Progress
from ..search.scorer import MutualInformationScorer
from ..steps.planning import plan_registration
from ..steps.preprocessing import crop_to_box, downsample, shrink_factors_for_spacing, working_image
from .masks import mask_bounding_points

#: How far (mm) a bone may have moved from the whole-volume pose: the other image is cropped this wide.
MOVING_MARGIN_MM = 30.0
#: Rotations (deg) tried about each bone's centre before optimising (flexion changes of 10-30 deg).
SEARCH_ANGLES_DEG = (-20.0, -10.0, 0.0, 10.0, 20.0)
#: Working voxels a bone's region may have: enough that the budget never coarsens it, so it is planned
#: at the images' own resolution (the coarser image's finest axis). At the whole-volume plan's budget
#: the porcine bone was prepared at ~2.5 mm and its masked optimum wandered 2.1 mm from the whole-volume
#: result; at 0.5 mm it stays on it.
BONE_VOXEL_BUDGET = 8_000_000
#: (shrink factor, smoothing sigma mm) of the per-bone pyramid: two coarse levels, then full resolution.
_PYRAMID = ((4, 2.0), (2, 1.0), (1, 0.0))


def register_bone(sampled, other, mask, core, start: np.ndarray, settings, progress: Progress, name: str) -> dict:
    """The bone's sampled -> other rigid matrix (``start``: the whole-volume one) and how it was found.

    ``mask`` is the bone's dilated region, ``core`` the bone itself (its centroid is the centre of
    the tried rotations). Never hands back a pose that scores worse than the start.
    """
    centroid = _centroid(core)
    sampled_work, other_work, plan = _prepared(sampled, other, mask, start, settings)
    method = _MethodFactory(mask, sampled_work, plan, settings)
    start_rigid = rigid_from_matrix(start, centroid)
    scorer = _masked_scorer(sampled_work, other_work, mask, plan)
    candidates = [
        rigid_from_matrix(turned_about(start, np.radians(angles), centroid), centroid)
        for angles in itertools.product(SEARCH_ANGLES_DEG, repeat=3)
        if np.linalg.norm(angles) <= max(SEARCH_ANGLES_DEG) + 1e-6
    ]
    ranked = sorted(((scorer.score(c), c) for c in candidates), key=lambda item: -item[0])
    progress.check_cancel("while searching a bone's start pose")
    # The best two starts are refined on the coarse levels; the whole-volume pose is always refined
    # too (the rotated starts must beat it, not replace it); the winner alone goes to full resolution.
    refined = []
    starts = [c for _, c in ranked[:2]] + [start_rigid]
    for number, candidate in enumerate(starts):
        part = progress.sub(0.6 * number / len(starts), 0.6 * (number + 1) / len(starts))
        found, _ = _optimise(method(_PYRAMID[:2]), candidate, sampled_work, other_work, plan, part, name)
        refined.append((scorer.score(found), found))
    refined.sort(key=lambda item: -item[0])
    corners = mask_bounding_points(mask)
    radius = max(20.0, float(np.linalg.norm(corners.max(axis=0) - corners.min(axis=0))) / 4.0)
    found, m = _polish(method(_PYRAMID[-1:]), refined[0][1], sampled_work, other_work, plan, radius,
                       progress.sub(0.6, 1.0), name)
    final_level = method(_PYRAMID[-1:])
    after = _evaluate(final_level, found, sampled_work, other_work)
    before = _evaluate(final_level, start_rigid, sampled_work, other_work)
    if not after < before:  # Mattes MI: lower is better; never hand back a pose worse than the start
        found, after = start_rigid, before
    return {"matrix": transform_to_matrix(found), "after": after, "before": before, "centroid": centroid,
            "stop": m.GetOptimizerStopConditionDescription(), "iterations": m.GetOptimizerIteration()}


def _prepared(sampled, other, mask, start: np.ndarray, settings):
    """The bone's region of both images, planned and prepared as a registration of its own."""
    corners = mask_bounding_points(mask)
    footprint = apply_matrix(start, corners)
    try:
        sampled_crop = crop_to_box(sampled, Box(corners.min(axis=0), corners.max(axis=0)))
        other_crop = crop_to_box(other, Box(footprint.min(axis=0), footprint.max(axis=0)).grow(MOVING_MARGIN_MM))
    except InputError:
        raise InputError("a bone of the segmentation lies outside the image it should belong to",
                         "check that the segmentation was drawn on this image (labels_space fixed/moving)") from None
    budget = max(settings.planning.working_voxel_budget, BONE_VOXEL_BUDGET)
    bone_settings = settings.replace(working_voxel_budget=budget, max_working_spacing_mm=_finest(sampled, other))
    plan = plan_registration(sampled_crop, other_crop, bone_settings)
    return working_image(sampled_crop, plan.fixed_shrink), working_image(other_crop, plan.moving_shrink), plan


class _MethodFactory:
    """Registration methods sampling inside the bone's mask, for a pyramid's levels."""

    def __init__(self, mask, sampled_work, plan, settings) -> None:
        inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(
            sitk.Resample(mask, sampled_work, sitk.Transform(), sitk.sitkNearestNeighbor, 0))))
        # Random samples outside the mask are dropped: ask for enough that ``wanted`` land inside it.
        wanted = float(np.clip(inside, 20_000, min(settings.planning.max_metric_samples, 25_000)))
        self.percentage = float(min(1.0, wanted / max(inside, 1.0)))
        self.mask, self.plan = mask, plan

    def __call__(self, levels) -> sitk.ImageRegistrationMethod:
        m = new_registration_method(self.plan.execution)
        m.SetMetricAsMattesMutualInformation(self.plan.number_of_histogram_bins)
        m.SetMetricFixedMask(self.mask)
        m.SetMetricSamplingStrategy(m.RANDOM)
        m.SetMetricSamplingPercentage(self.percentage, self.plan.optimizer.random_seed)
        m.SetInterpolator(sitk.sitkLinear)
        m.SetShrinkFactorsPerLevel([s for s, _ in levels])
        m.SetSmoothingSigmasPerLevel([g for _, g in levels])
        m.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return m


def _masked_scorer(sampled_work, other_work, mask, plan) -> MutualInformationScorer:
    """The search's scorer, inside the mask, on copies at twice the working spacing (milliseconds a pose)."""
    spacing = 2.0 * plan.working_spacing_mm
    small = downsample(sampled_work, shrink_factors_for_spacing(sampled_work.GetSpacing(), spacing))
    large = downsample(other_work, shrink_factors_for_spacing(other_work.GetSpacing(), spacing))
    return MutualInformationScorer(small, large, bins=plan.number_of_histogram_bins, mask=mask)


def _optimise(m, start, fixed, moving, plan, progress: Progress, name: str):
    """Regular-step gradient descent from ``start``: quick, gets into the right basin."""
    optimizer = plan.optimizer
    iterations = max(60, optimizer.number_of_iterations)
    m.SetOptimizerAsRegularStepGradientDescent(
        learningRate=optimizer.max_step_mm, minStep=optimizer.min_step_mm, numberOfIterations=iterations,
        relaxationFactor=0.7, gradientMagnitudeTolerance=1e-12)
    m.SetOptimizerScalesFromPhysicalShift()
    return _execute(m, start, fixed, moving, plan, True, progress, iterations, f"{name}: coarse levels")


def _polish(m, start, fixed, moving, plan, radius_mm, progress: Progress, name: str):
    """Powell's derivative-free search at full resolution.

    Why: the twist of a long bone about its own axis changes the metric clearly, but its gradient
    is tiny next to the tilts', and every gradient-based optimiser tried (regular step, conjugate
    gradients, plain descent) stopped 1.5 deg short on the phantom tibia; Powell lands within 0.1 deg.
    ``radius_mm`` (about the bone's radius) makes a step of 1 rad as large as a step of that many mm.
    """
    m.SetOptimizerAsPowell(numberOfIterations=6, maximumLineIterations=12, stepLength=0.5,
                           stepTolerance=1e-3, valueTolerance=1e-5)
    m.SetOptimizerScales([radius_mm] * 3 + [1.0] * 3)
    return _execute(m, start, fixed, moving, plan, False, progress, 6, f"{name}: full resolution")


def _execute(m, start, fixed, moving, plan, uses_gradient: bool, progress: Progress, limit: int, label: str):
    m.SetInitialTransform(sitk.VersorRigid3DTransform(start), inPlace=False)
    stopped = stop_on_cancel(m, progress, lambda: m.GetOptimizerIteration() / limit, label)
    try:
        with global_threads(execute_threads(plan.execution, uses_gradient)):
            found = m.Execute(fixed, moving)
    except RuntimeError:  # the bone left the other image's crop: keep the start, the caller compares
        return sitk.VersorRigid3DTransform(start), m
    if stopped[0]:
        progress.check_cancel("during the per-bone registration")
    return as_versor(found), m


def _evaluate(m: sitk.ImageRegistrationMethod, transform, fixed, moving) -> float:
    m.SetInitialTransform(sitk.VersorRigid3DTransform(transform), inPlace=False)
    try:
        return float(m.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("inf")


def _finest(sampled, other) -> float:
    """The coarser image's finest axis: the resolution both images still show."""
    return max(min(sampled.GetSpacing()), min(other.GetSpacing()))


def _centroid(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        raise InputError("a bone of the segmentation is empty", "check the segmentation")
    return np.array(stats.GetCentroid(1))
