"""One bone's rigid registration: planned and prepared like the whole volume, run by the engine in its mask.

Why: a bone is a small, well-defined part of the image; the whole-volume result is a good start but
a compromise between bones. The bone's region is planned (``steps.planning``) and prepared
(``steps.preprocessing``) as a whole registration would be, a few rotations about the bone's centre
are scored with the masked form of the search's scorer, and the engine (the one the whole volume
used, with the bone's mask: its metric samples only the bone) optimises from the best of them and
from the whole-volume pose. The best endpoint by the masked Mattes MI is the bone's pose, judged by
the whole volume's checks and verdict (``bone_verdict``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..engines import RegistrationEngine, SimpleITKEngine
from ..errors import InputError, RegistrationFailedError
from ..geometry import Box, apply_matrix, mask_on_grid, rigid_from_matrix, transform_to_matrix, turned_about
from ..progress import Progress
from ..search.scorer import MutualInformationScorer
from ..steps.metrics import mattes_value
from ..steps.planning import RegistrationPlan, plan_registration
from ..steps.preprocessing import crop_to_box, downsample, shrink_factors_for_spacing, working_image
from .bone_verdict import BoneVerdict, bone_verdict
from .masks import mask_bounding_points

#: How far (mm) a bone may have moved from the whole-volume pose: the other image is cropped this wide.
MOVING_MARGIN_MM = 30.0
#: Rotations (deg) tried about each bone's centre before optimising (flexion changes of 10-30 deg).
SEARCH_ANGLES_DEG = (-20.0, -10.0, 0.0, 10.0, 20.0)
#: The tried rotations (deg about x, y, z): every combination within the largest angle overall (33).
ROTATIONS_DEG = tuple(angles for angles in itertools.product(SEARCH_ANGLES_DEG, repeat=3)
                      if np.linalg.norm(angles) <= max(SEARCH_ANGLES_DEG) + 1e-6)
#: Working voxels a bone's region may have: enough that the budget never coarsens it, so it is planned
#: at the images' own resolution (the coarser image's finest axis). At the whole-volume plan's budget
#: the porcine bone was prepared at ~2.5 mm and its masked optimum wandered 2.1 mm from the whole-volume
#: result; at 0.5 mm it stays on it.
BONE_VOXEL_BUDGET = 8_000_000
#: The bone's pyramid (shrink factor, smoothing sigma mm): two coarse levels get each start into its
#: basin, the engine's later rounds polish at full resolution.
PYRAMID = ((4, 2.0), (2, 1.0), (1, 0.0))
#: The metric's samples inside a bone (fewest, most) and the sample sets the engine optimises it on.
#: Why fewer than the whole volume's: the engine's cost is its samples, and a bone's masked endpoints
#: are compared by the masked metric anyway. With the whole volume's (60-120 k samples, 3 sets) the
#: porcine bone took 1169 s (71 s before the engine ran bones) for the same pose (2.10 vs 2.14 mm).
BONE_SAMPLES = (20_000, 25_000)
BONE_SAMPLE_ROUNDS = 1
#: Best-scoring rotated starts the engine optimises from, besides the whole-volume pose itself (two, as
#: before the engine ran bones, gave the same poses on the flexed phantom in 1.5x the time).
REFINED_STARTS = 1


@dataclass
class BoneSpace:
    """A bone's working images (``sampled``, ``other``), copies at the search spacing (``small``,
    ``large``), the masked scorer on those and the bone's centre: what the verdict's evidence reads."""

    sampled: sitk.Image
    other: sitk.Image
    mask: sitk.Image
    center: np.ndarray
    small: sitk.Image
    large: sitk.Image
    scorer: MutualInformationScorer

    @classmethod
    def of(cls, sampled, other, mask, center: np.ndarray, plan: RegistrationPlan) -> BoneSpace:
        """The scorer samples inside the mask on copies at the plan's search spacing (about 1 ms a pose)."""
        spacing = plan.search_spacing_mm
        small = downsample(sampled, shrink_factors_for_spacing(sampled.GetSpacing(), spacing))
        large = downsample(other, shrink_factors_for_spacing(other.GetSpacing(), spacing))
        scorer = MutualInformationScorer(small, large, bins=plan.number_of_histogram_bins, mask=mask)
        return cls(sampled, other, mask, center, small, large, scorer)


def register_bone(sampled, other, mask, core, start: np.ndarray, settings, progress: Progress, name: str,
                  engine: Optional[RegistrationEngine] = None) -> dict:
    """The bone's sampled -> other rigid matrix (``start``: the whole-volume one), how it was found and
    its verdict.

    ``mask`` is the bone's dilated region, ``core`` the bone itself (its centroid is the centre of
    the tried rotations). ``engine`` defaults to SimpleITK. Never hands back a pose that scores worse
    than the start.
    """
    engine = engine or SimpleITKEngine()
    centroid = _centroid(core)
    sampled_work, other_work, plan = _prepared(sampled, other, mask, start, settings)
    space = BoneSpace.of(sampled_work, other_work, mask, centroid, plan)
    start_rigid = rigid_from_matrix(start, centroid)
    ranked = _rotated_starts(space, start, centroid)
    progress.check_cancel("while searching a bone's start pose")
    starts = [c for _, c in ranked[:REFINED_STARTS]] + [start_rigid]
    endpoints = _endpoints(engine, space, starts, plan, progress.sub(0.0, 0.9), name)
    metric = _MaskedMetric(space, plan)
    before = metric.value(start_rigid)
    scored = sorted(((metric.value(e.transform), n, e) for n, e in enumerate(endpoints)), key=lambda t: t[:2])
    found, stages = start_rigid, []
    if scored and scored[0][0] < before:  # Mattes MI: lower is better; never a pose worse than the start
        found, stages = rigid_from_matrix(transform_to_matrix(scored[0][2].transform), centroid), scored[0][2].stages
    after = metric.value(found)
    progress.report(0.9, f"{name}: checking the result", force=True)
    competitors = sorted([(space.scorer.score(e.transform), e.transform) for e in endpoints] + ranked,
                         key=lambda item: -item[0])
    verdict = _bone_verdict(space, competitors, start_rigid, found, before, after, plan, settings)
    progress.done(f"{name}: done")
    return {"matrix": transform_to_matrix(found), "after": after, "before": before, "centroid": centroid,
            "stop": stages[-1].stop_condition if stages else "no start improved on the whole-volume pose",
            "iterations": sum(max(0, s.iterations) for s in stages), "verdict": verdict}


def _endpoints(engine: RegistrationEngine, space: BoneSpace, starts, plan, progress: Progress, name: str) -> list:
    """The engine's output from each start, with the bone's mask (a start it cannot run from is left out)."""
    endpoints = []
    for number, (candidate, part) in enumerate(zip(starts, progress.split(len(starts)))):
        part.report(0.0, f"{name}: start {number + 1} of {len(starts)}", force=True)
        try:
            endpoints.append(engine.run(space.sampled, space.other, candidate, plan, part, mask=space.mask))
        except RegistrationFailedError:  # the bone left the other image's crop from this start
            continue
    return endpoints


def _bone_verdict(space: BoneSpace, competitors, start, found, before, after, plan, settings) -> BoneVerdict:
    """The one call that judges a bone (see ``bone_verdict``)."""
    return bone_verdict(space, competitors, start, found, before, after, plan, settings.checks)


def _rotated_starts(space: BoneSpace, start: np.ndarray, centroid: np.ndarray) -> List[Tuple[float, sitk.Transform]]:
    """The start turned about the bone's centre by each of ``ROTATIONS_DEG``, with their masked scores,
    best first."""
    candidates = [rigid_from_matrix(turned_about(start, np.radians(angles), centroid), centroid)
                  for angles in ROTATIONS_DEG]
    return sorted(((space.scorer.score(c), c) for c in candidates), key=lambda item: -item[0])


def _prepared(sampled, other, mask, start: np.ndarray, settings):
    """The bone's region of both images, planned and prepared as a registration of its own.

    The plan is the whole volume's settings at the bone's resolution, with the bone's pyramid; its
    initialisation reads "Off" (the bone starts near the whole-volume pose), so the checks limit how
    far a bone may turn away from it.
    """
    corners = mask_bounding_points(mask)
    try:
        sampled_crop = crop_to_box(sampled, Box.around(corners))
        other_crop = crop_to_box(other, Box.around(apply_matrix(start, corners)).grow(MOVING_MARGIN_MM))
    except InputError:
        raise InputError("a bone of the segmentation lies outside the image it should belong to",
                         "check that the segmentation was drawn on this image (labels_space fixed/moving)") from None
    budget = max(settings.planning.working_voxel_budget, BONE_VOXEL_BUDGET)
    bone_settings = settings.replace(
        working_voxel_budget=budget, max_working_spacing_mm=_finest(sampled, other),
        shrink_factors=tuple(f for f, _ in PYRAMID), smoothing_sigmas_mm=tuple(g for _, g in PYRAMID),
        min_metric_samples=min(BONE_SAMPLES[0], settings.planning.min_metric_samples),
        max_metric_samples=min(BONE_SAMPLES[1], settings.planning.max_metric_samples),
        resample_rounds=min(BONE_SAMPLE_ROUNDS, settings.optimizer.resample_rounds), initialize_transform_mode="Off")
    plan = plan_registration(sampled_crop, other_crop, bone_settings).with_note(
        f"The bone starts from the whole-volume pose and {len(ROTATIONS_DEG)} rotations about "
        f"its centre within {max(SEARCH_ANGLES_DEG):g} deg; the metric samples inside its mask.")
    return working_image(sampled_crop, plan.fixed_shrink), working_image(other_crop, plan.moving_shrink), plan


class _MaskedMetric:
    """The bone's one Mattes MI evaluation: the plan's samples inside the mask, its seed (as the whole
    volume's "before" and "after"); ``None`` becomes +inf (no overlap: never the best)."""

    def __init__(self, space: BoneSpace, plan: RegistrationPlan) -> None:
        inside = float(np.count_nonzero(mask_on_grid(space.mask, space.sampled)))
        fraction = plan.metric_samples / max(inside, 1.0)
        self.fraction = None if fraction >= 1.0 else fraction
        self.space, self.plan = space, plan

    def value(self, transform: sitk.Transform) -> float:
        plan = self.plan
        value = mattes_value(self.space.sampled, self.space.other, transform, plan.execution,
                             plan.number_of_histogram_bins, self.fraction, plan.optimizer.random_seed,
                             mask=self.space.mask)
        return float("inf") if value is None else value


def _finest(sampled, other) -> float:
    """The coarser image's finest axis: the resolution both images still show."""
    return max(min(sampled.GetSpacing()), min(other.GetSpacing()))


def _centroid(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        raise InputError("a bone of the segmentation is empty", "check the segmentation")
    return np.array(stats.GetCentroid(1))
