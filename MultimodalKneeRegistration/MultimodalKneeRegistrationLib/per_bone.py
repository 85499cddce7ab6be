"""Per-bone rigid registration, for knees scanned at different flexion angles.

Why: a knee MRI and CT are often taken with the joint at different angles, so no single rigid
transform aligns femur, tibia and patella at once: the whole-volume result is a compromise. Starting
from it, each bone is registered again with the metric restricted to a dilated mask of that bone
(ITKv4 fixed-image mask; BRAINSFit's ``maskProcessingMode ROI`` does the same), giving one rigid
transform per bone, the relative rotation between bones (the flexion change), and optionally a
displacement field that moves each bone rigidly and blends in between (``blended_field``).

Conventions: transforms map fixed-image LPS points to moving-image points (ITK resampling
convention, like the whole-volume result). The bone labels belong to the image they were drawn on:
``labels_space="fixed"`` (default, e.g. an automatic CT segmentation of a fixed CT) or ``"moving"``
(a segmentation of the moving image): then the moving image is the one sampled under the mask and
each result is inverted back, so no label is ever resampled through an imprecise transform.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .bone_masks import BoneLabels, bone_regions, bone_values, mask_bounding_points
from .engines.base import execute_threads, global_threads, new_registration_method, preparation_threads
from .errors import CancelledError, InputError
from .geometry import Box, apply_matrix, rotation_angle_deg, transform_to_matrix
from .initialization import as_versor, rigid_from_matrix
from .preprocessing import crop_to_box, downsample, shrink_factors_for_spacing, window_intensities
from .settings import PRESETS, RegistrationSettings

ProgressCallback = Callable[[float, str], None]

#: Margin (mm) added around each bone: the metric needs the bone's edges and a rim of soft tissue.
DEFAULT_DILATION_MM = 5.0
#: How far (mm) a bone may have moved from the whole-volume pose: the other image is cropped this wide.
MOVING_MARGIN_MM = 30.0
#: Rotations (deg) tried about each bone's centre before optimising (flexion changes of 10-30 deg).
SEARCH_ANGLES_DEG = (-20.0, -10.0, 0.0, 10.0, 20.0)
_PYRAMID = ((4, 2.0), (2, 1.0), (1, 0.0))


@dataclass
class BoneResult:
    """One bone's rigid transform (fixed -> moving, LPS) and how it was found."""

    name: str
    label: int
    transform: sitk.VersorRigid3DTransform
    centroid_lps: np.ndarray
    metric_before: float
    metric_after: float
    stop_condition: str
    iterations: int
    seconds: float
    rotation_from_whole_deg: float
    shift_from_whole_mm: float

    def to_dict(self) -> Dict[str, Any]:
        matrix = transform_to_matrix(self.transform)
        return {
            "name": self.name,
            "label": int(self.label),
            "transform": {
                "class": self.transform.GetName(),
                "parameters": list(self.transform.GetParameters()),
                "fixed_parameters": list(self.transform.GetFixedParameters()),
                "matrix_lps_fixed_to_moving": matrix.round(8).tolist(),
            },
            "centroid_lps_mm": np.round(self.centroid_lps, 3).tolist(),
            "metric_before": round(float(self.metric_before), 6),
            "metric_after": round(float(self.metric_after), 6),
            "stop_condition": self.stop_condition,
            "iterations": int(self.iterations),
            "seconds": round(self.seconds, 3),
            "rotation_from_whole_deg": round(self.rotation_from_whole_deg, 3),
            "shift_from_whole_mm_at_centroid": round(self.shift_from_whole_mm, 3),
        }


@dataclass
class PerBoneResult:
    """All bones' results plus the relative rotation of every pair of bones."""

    bones: List[BoneResult]
    whole_transform: sitk.Transform
    labels_space: str
    dilation_mm: float
    warnings: List[str] = field(default_factory=list)

    def bone(self, name: str) -> BoneResult:
        for b in self.bones:
            if b.name == name:
                return b
        raise InputError(f"no bone named {name!r} in the per-bone result",
                         f"use one of {', '.join(b.name for b in self.bones)}")

    def transforms(self) -> Dict[str, sitk.Transform]:
        return {b.name: b.transform for b in self.bones}

    def relative_rotation_deg(self, first: str, second: str) -> float:
        """Rotation angle of ``second`` relative to ``first`` between the two scans (the flexion change)."""
        return relative_motion(self.bone(first).transform, self.bone(second).transform)["rotation_deg"]

    def relative_rotations(self) -> List[Dict[str, Any]]:
        return [{"bones": [a.name, b.name], **relative_motion(a.transform, b.transform)}
                for a, b in itertools.combinations(self.bones, 2)]

    def summary(self) -> str:
        lines = [f"{b.name}: {b.rotation_from_whole_deg:.1f} deg / {b.shift_from_whole_mm:.1f} mm from the "
                 f"whole-volume result, metric {b.metric_before:.4f} -> {b.metric_after:.4f}" for b in self.bones]
        lines += [f"{r['bones'][1]} relative to {r['bones'][0]}: rotated {r['rotation_deg']:.1f} deg"
                  for r in self.relative_rotations()]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def to_dict(self) -> Dict[str, Any]:
        return {
            "labels_space": self.labels_space,
            "dilation_mm": self.dilation_mm,
            "whole_volume_matrix_lps": transform_to_matrix(self.whole_transform).round(8).tolist(),
            "bones": [b.to_dict() for b in self.bones],
            "relative_rotations": [
                {**r, "axis_lps": np.round(r["axis_lps"], 4).tolist(), "rotation_deg": round(r["rotation_deg"], 3)}
                for r in self.relative_rotations()
            ],
            "warnings": list(self.warnings),
        }


def relative_motion(first: sitk.Transform, second: sitk.Transform) -> Dict[str, Any]:
    """How ``second`` moved relative to ``first`` between the scans: angle (deg) and axis (fixed LPS).

    With fixed -> moving transforms A and B, ``inverse(A) * B`` is the second bone's motion seen
    from the first bone: for femur and tibia, its angle is the change of knee flexion.

    Example:
        >>> relative_motion(femur_transform, tibia_transform)["rotation_deg"]  # doctest: +SKIP
        15.02
    """
    matrix = np.linalg.inv(transform_to_matrix(first)) @ transform_to_matrix(second)
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rotation = u @ vt
    axis = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                     rotation[1, 0] - rotation[0, 1]])
    norm = np.linalg.norm(axis)
    return {"rotation_deg": rotation_angle_deg(matrix), "axis_lps": axis / norm if norm > 1e-12 else axis}


def register_per_bone(
    fixed: sitk.Image,
    moving: sitk.Image,
    whole: Union[sitk.Transform, Any],
    labels: BoneLabels,
    settings: Optional[RegistrationSettings] = None,
    progress: Optional[ProgressCallback] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    *,
    labels_space: str = "fixed",
    dilation_mm: float = DEFAULT_DILATION_MM,
    bones: Optional[Sequence[str]] = None,
) -> PerBoneResult:
    """One rigid registration per bone, each restricted to that bone's dilated mask.

    ``whole`` is the whole-volume result (a ``RegistrationResult`` or its fixed -> moving transform):
    every bone starts there, tries a few rotations about its own centre, and is optimised with
    Mattes mutual information sampled only inside its mask. ``labels`` are on the fixed image
    (``labels_space="fixed"``) or on the moving one (``"moving"``). Raises ``InputError`` for labels
    that miss the image, ``CancelledError`` when ``should_cancel()`` turns true.

    Example:
        >>> whole = register(ct, mr, settings)  # doctest: +SKIP
        >>> per_bone = register_per_bone(ct, mr, whole, segment_bones(ct, expected_bones=3))  # doctest: +SKIP
        >>> per_bone.relative_rotation_deg("femur", "tibia")  # doctest: +SKIP
    """
    settings = settings or PRESETS["mri-ct"]
    if labels_space not in ("fixed", "moving"):
        raise InputError(f"labels_space {labels_space!r} is not 'fixed' or 'moving'",
                         "say which image the segmentation was drawn on")
    whole_transform = getattr(whole, "transform", whole)
    if not isinstance(whole_transform, sitk.Transform):
        raise InputError("the whole-volume result is not a transform", "pass register()'s result or its transform")
    whole_matrix = transform_to_matrix(whole_transform)
    swapped = labels_space == "moving"
    sampled, other = (moving, fixed) if swapped else (fixed, moving)
    start = np.linalg.inv(whole_matrix) if swapped else whole_matrix
    values = bone_values(labels, bones)
    working = _working_spacing(sampled, other, settings)
    results: List[BoneResult] = []
    warnings: List[str] = []
    regions = bone_regions(labels, dilation_mm)
    for number, value in enumerate(values):
        name = labels.names[value]
        _check_cancel(should_cancel, f"before registering the {name}")
        report = _sub_progress(progress, number, len(values), name)
        began = time.perf_counter()
        mask = regions[value]
        core = labels.mask(value)
        centroid = _centroid(core)
        with global_threads(preparation_threads(settings)):
            outcome = _register_bone(sampled, other, mask, start, centroid, working, settings, report,
                                     should_cancel)
        matrix = np.linalg.inv(outcome["matrix"]) if swapped else outcome["matrix"]
        # Swapped: the centroid is in the moving image; its fixed-space place is where the result sends it.
        fixed_centroid = apply_matrix(outcome["matrix"], centroid[None])[0] if swapped else centroid
        transform = rigid_from_matrix(matrix, fixed_centroid)
        change = np.linalg.inv(whole_matrix) @ matrix
        shift = float(np.linalg.norm(apply_matrix(change, fixed_centroid[None])[0] - fixed_centroid))
        result = BoneResult(name, value, transform, fixed_centroid, outcome["before"], outcome["after"],
                            outcome["stop"], outcome["iterations"], time.perf_counter() - began,
                            rotation_angle_deg(change), shift)
        if not result.metric_after <= result.metric_before + 1e-6:
            warnings.append(f"the {name}'s metric did not improve ({result.metric_before:.4f} -> "
                            f"{result.metric_after:.4f}); its transform may be no better than the whole-volume one")
        if result.rotation_from_whole_deg > 45.0:
            warnings.append(f"the {name} turned {result.rotation_from_whole_deg:.0f} deg away from the "
                            "whole-volume result: check it in the QC image")
        results.append(result)
    if progress is not None:
        progress(1.0, "per-bone registration done")
    return PerBoneResult(results, whole_transform, labels_space, float(dilation_mm), warnings)


def _working_spacing(sampled: sitk.Image, other: sitk.Image, settings: RegistrationSettings) -> float:
    """Like the planner: no finer than the coarser image's finest axis, no coarser than the cap."""
    fine = min(min(sampled.GetSpacing()), min(other.GetSpacing()))
    coarse = max(min(sampled.GetSpacing()), min(other.GetSpacing()))
    return float(min(max(coarse, fine), max(settings.max_working_spacing_mm, fine)))


def _prepare(image: sitk.Image, box: Box, spacing_mm: float) -> sitk.Image:
    cropped = crop_to_box(image, box)
    return window_intensities(downsample(cropped, shrink_factors_for_spacing(cropped.GetSpacing(), spacing_mm)))


def _register_bone(sampled, other, mask, start, centroid, working, settings, report, should_cancel) -> dict:
    corners = mask_bounding_points(mask)
    box = Box(corners.min(axis=0), corners.max(axis=0))
    try:
        sampled_work = _prepare(sampled, box, working)
        footprint = apply_matrix(start, corners)
        other_work = _prepare(other, Box(footprint.min(axis=0), footprint.max(axis=0)).grow(MOVING_MARGIN_MM),
                              working)
    except InputError:
        raise InputError("a bone of the segmentation lies outside the image it should belong to",
                         "check that the segmentation was drawn on this image (labels_space fixed/moving)") from None
    inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(
        sitk.Resample(mask, sampled_work, sitk.Transform(), sitk.sitkNearestNeighbor, 0))))
    # Random samples outside the mask are dropped: ask for enough that ``wanted`` land inside it.
    wanted = float(np.clip(inside, 20_000, min(settings.max_metric_samples, 25_000)))
    percentage = float(min(1.0, wanted / max(inside, 1.0)))

    def method(levels) -> sitk.ImageRegistrationMethod:
        m = new_registration_method(settings)
        m.SetMetricAsMattesMutualInformation(settings.number_of_histogram_bins)
        m.SetMetricFixedMask(mask)
        m.SetMetricSamplingStrategy(m.RANDOM)
        m.SetMetricSamplingPercentage(percentage, settings.random_seed)
        m.SetInterpolator(sitk.sitkLinear)
        m.SetShrinkFactorsPerLevel([s for s, _ in levels])
        m.SetSmoothingSigmasPerLevel([g for _, g in levels])
        m.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return m

    start_rigid = rigid_from_matrix(start, centroid)
    score = _MaskedScorer(sampled_work, other_work, mask, 2.0 * working, settings.number_of_histogram_bins)
    candidates = []
    for angles in itertools.product(SEARCH_ANGLES_DEG, repeat=3):
        if np.linalg.norm(angles) <= max(SEARCH_ANGLES_DEG) + 1e-6:
            candidate = _rotated_about(start_rigid, np.radians(angles), centroid)
            candidates.append((score(candidate), candidate))
    _check_cancel(should_cancel, "while searching a bone's start pose")
    candidates.sort(key=lambda c: -c[0])
    # The best two starts are refined on the coarse levels; the winner alone goes to full resolution.
    refined = []
    # The whole-volume pose is always refined too: the rotated starts must beat it, not replace it.
    for candidate in [c for _, c in candidates[:2]] + [start_rigid]:
        found, _ = _optimise(method(_PYRAMID[:2]), candidate, sampled_work, other_work, settings, 60,
                             lambda level, it, value: report(level, it, value), should_cancel)
        refined.append((score(found), found))
    refined.sort(key=lambda c: -c[0])
    radius = max(20.0, float(np.linalg.norm(box.size)) / 4.0)
    found, m = _polish(method(_PYRAMID[-1:]), refined[0][1], sampled_work, other_work, settings, radius,
                       lambda level, it, value: report(2, it, value), should_cancel)
    final_level = method(_PYRAMID[-1:])
    after = _evaluate(final_level, found, sampled_work, other_work)
    before = _evaluate(final_level, start_rigid, sampled_work, other_work)
    if not after < before:  # Mattes MI: lower is better; never hand back a pose worse than the start
        found, after = start_rigid, before
    return {"matrix": transform_to_matrix(found), "after": after, "before": before,
            "stop": m.GetOptimizerStopConditionDescription(), "iterations": m.GetOptimizerIteration()}


class _MaskedScorer:
    """Mutual information inside the mask on a coarse copy of the sampled image (numpy, fast).

    Why: ``MetricEvaluate`` rebuilds the metric (and the moving image's gradient) on every call,
    ~0.3 s; scoring the ~30 candidate starts and the refined poses this way takes milliseconds.
    """

    def __init__(self, sampled: sitk.Image, other: sitk.Image, mask: sitk.Image, spacing_mm: float,
                 bins: int) -> None:
        shrink = shrink_factors_for_spacing(sampled.GetSpacing(), spacing_mm)
        self.grid = sitk.SmoothingRecursiveGaussian(sitk.BinShrink(sampled, shrink), spacing_mm / 2.0)
        inside = sitk.Resample(mask, self.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        self.inside = sitk.GetArrayViewFromImage(inside).ravel() > 0
        self.other = sitk.SmoothingRecursiveGaussian(other, spacing_mm / 2.0)
        self.bins = bins
        self.fixed_bins = _to_bins(sitk.GetArrayViewFromImage(self.grid).ravel()[self.inside], bins)
        self.other_range = np.percentile(sitk.GetArrayViewFromImage(other), [0.5, 99.5])

    def __call__(self, transform: sitk.Transform) -> float:
        warped = sitk.Resample(self.other, self.grid, transform, sitk.sitkLinear, np.nan, sitk.sitkFloat32)
        values = sitk.GetArrayViewFromImage(warped).ravel()[self.inside]
        valid = np.isfinite(values)
        if valid.mean() < 0.5:
            return -np.inf
        other_bins = _to_bins(values[valid], self.bins, self.other_range)
        joint = np.bincount(self.fixed_bins[valid] * self.bins + other_bins, minlength=self.bins**2)
        p = joint.reshape(self.bins, self.bins) / max(1, joint.sum())
        px, py = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
        nz = p > 0
        return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum()) * float(valid.mean())


def _to_bins(values: np.ndarray, bins: int, value_range=None) -> np.ndarray:
    lo, hi = value_range if value_range is not None else np.percentile(values, [0.5, 99.5])
    scaled = (values - lo) / max(float(hi - lo), 1e-9) * bins
    return np.clip(scaled.astype(np.int64), 0, bins - 1)


def _optimise(m, start, fixed, moving, settings, iterations, report, should_cancel):
    """Regular-step gradient descent from ``start``: quick, gets into the right basin."""
    m.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.max_step_mm, minStep=settings.min_step_mm,
        numberOfIterations=max(iterations, settings.number_of_iterations), relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-12)
    m.SetOptimizerScalesFromPhysicalShift()
    return _execute(m, start, fixed, moving, settings, True, report, should_cancel)


def _polish(m, start, fixed, moving, settings, radius_mm, report, should_cancel):
    """Powell's derivative-free search at full resolution.

    Why: the twist of a long bone about its own axis changes the metric clearly, but its gradient
    is tiny next to the tilts', and every gradient-based optimiser tried (regular step, conjugate
    gradients, plain descent) stopped 1.5 deg short on the phantom tibia; Powell lands within 0.1 deg.
    ``radius_mm`` (about the bone's radius) makes a step of 1 rad as large as a step of that many mm.
    """
    m.SetOptimizerAsPowell(numberOfIterations=6, maximumLineIterations=12, stepLength=0.5,
                           stepTolerance=1e-3, valueTolerance=1e-5)
    m.SetOptimizerScales([radius_mm] * 3 + [1.0] * 3)
    return _execute(m, start, fixed, moving, settings, False, report, should_cancel)


def _execute(m, start, fixed, moving, settings, uses_gradient: bool, report, should_cancel):
    m.SetInitialTransform(sitk.VersorRigid3DTransform(start), inPlace=False)
    cancelled = [False]

    def on_iteration() -> None:
        if should_cancel is not None and should_cancel():
            cancelled[0] = True
            m.StopRegistration()
        report(m.GetCurrentLevel(), m.GetOptimizerIteration(), m.GetMetricValue())

    m.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        with global_threads(execute_threads(settings, uses_gradient)):
            found = m.Execute(fixed, moving)
    except RuntimeError:  # the bone left the other image's crop: keep the start, the caller compares
        return sitk.VersorRigid3DTransform(start), m
    if cancelled[0]:
        raise CancelledError("per-bone registration cancelled", "nothing was written")
    return as_versor(found), m


def _evaluate(m: sitk.ImageRegistrationMethod, transform, fixed, moving) -> float:
    m.SetInitialTransform(sitk.VersorRigid3DTransform(transform), inPlace=False)
    try:
        return float(m.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("inf")


def _rotated_about(start: sitk.VersorRigid3DTransform, rotation_vector: np.ndarray,
                   centroid: np.ndarray) -> sitk.VersorRigid3DTransform:
    """``start`` preceded by a rotation about ``centroid`` (in the sampled image's space)."""
    angle = float(np.linalg.norm(rotation_vector))
    turn = np.eye(4)
    if angle > 1e-12:
        k = rotation_vector / angle
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        turn[:3, :3] = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
        turn[:3, 3] = centroid - turn[:3, :3] @ centroid
    return rigid_from_matrix(transform_to_matrix(start) @ turn, centroid)


def _centroid(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        raise InputError("a bone of the segmentation is empty", "check the segmentation")
    return np.array(stats.GetCentroid(1))


def _sub_progress(progress, number: int, count: int, name: str):
    levels = len(_PYRAMID)

    def report(level: int, iteration: int, metric: float) -> None:
        if progress is not None:
            within = (level + min(1.0, iteration / 100.0)) / levels
            progress((number + within) / count, f"{name}: level {level + 1}, iteration {iteration}, "
                                                f"metric {metric:.4f}")

    return report


def _check_cancel(should_cancel, where: str) -> None:
    if should_cancel is not None and should_cancel():
        raise CancelledError(f"per-bone registration cancelled {where}", "nothing was written")
