"""``register``: the one entry point that plans, prepares, initialises, optimises and checks.

Why: the forum user needed five manual steps (crop, downsample, crop again, tune BRAINSFit, check
by eye). This function does them in order and returns a ``RegistrationResult`` that says what it
did, how well it worked, and whether the result passed its own sanity checks.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .engines import SimpleITKEngine
from .engines.base import global_threads, mattes_value, preparation_threads
from .errors import CancelledError, InputError, RegistrationFailedError
from .geometry import (
    Box,
    apply_matrix,
    corner_points,
    image_center,
    is_linear,
    transform_to_matrix,
)
from .initialization import rigid_from_matrix, search_start_pose
from .metrics import check_result
from .planning import RegistrationPlan, plan_registration
from .preprocessing import crop_to_box, downsample, replace_non_finite, validate_volume, window_intensities
from .results import RegistrationResult, StageResult
from .settings import PRESETS, RegistrationSettings

ProgressCallback = Callable[[float, str], None]

#: Fraction of the progress bar each phase takes.
_PHASES = {"prepare": (0.0, 0.1), "search": (0.1, 0.3), "optimise": (0.3, 0.97), "check": (0.97, 1.0)}


def register(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: Optional[RegistrationSettings] = None,
    *,
    initial_transform: Optional[sitk.Transform] = None,
    progress: Optional[ProgressCallback] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` and return a transform mapping fixed points to moving points.

    Images are 3D scalar SimpleITK images in LPS; they are never modified. ``initial_transform``
    (fixed -> moving, linear) is the start the search explores around; when the search's best pose
    fails the sanity checks, the start refined locally is kept instead if it passes them. Raises ``InputError`` for
    unusable inputs, ``CancelledError`` when ``should_cancel()`` turns true, and
    ``RegistrationFailedError`` (its ``.result`` holds the rejected result) when the result fails its
    sanity checks and ``settings.fail_on_sanity_check`` is set.

    Example:
        >>> result = register(ct, mr, PRESETS["mri-ct"])  # doctest: +SKIP
        >>> sitk.WriteTransform(result.transform, "transform.tfm")  # doctest: +SKIP
    """
    settings = settings or PRESETS["mri-ct"]
    settings.validate()
    result, failures = _register_once(fixed, moving, settings, initial_transform, progress, should_cancel)
    if failures and initial_transform is not None and settings.initialize_transform_mode == "search":
        # Weak shared information (a small micro-CT cube in soft tissue) can make the search prefer a
        # look-alike pose far from the user's start; the user's start, refined locally, may pass.
        local, local_failures = _register_once(
            fixed, moving, settings.replace(initialize_transform_mode="Off"), initial_transform, progress,
            should_cancel,
        )
        if not local_failures:
            local.warnings.insert(
                0,
                "the search's best pose failed the sanity checks (" + "; ".join(failures) + "); kept the "
                "local refinement of the given initial transform, which passes them",
            )
            local.timings["rejected_search"] = result.timings["total"]
            result, failures = local, []
    if failures and settings.fail_on_sanity_check:
        error = RegistrationFailedError(
            "the registration result failed its sanity checks: " + "; ".join(failures),
            "look at the QC image; try another preset, an initial transform that roughly aligns the images, "
            "or an ROI around the anatomy both images show (the report lists every check)",
        )
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result


def _register_once(fixed, moving, settings, initial_transform, progress, should_cancel):
    """One planned, initialised, optimised and checked run: (result, failed sanity checks)."""
    report = _progress_reporter(progress)
    timings: Dict[str, float] = {}
    began = time.perf_counter()
    with global_threads(preparation_threads(settings)):
        warnings = validate_volume(fixed, "fixed") + validate_volume(moving, "moving")
        start = _checked_start(initial_transform)
        report("prepare", 0.0, "planning resolution and field of view")
        plan = plan_registration(fixed, moving, settings, start)
        fixed_work, moving_work = _working_images(fixed, moving, plan)
        timings["prepare"] = time.perf_counter() - began
        _cancel_point(should_cancel, "while preparing the images")

        swapped = plan.small_fov_image == "moving"
        sampled, other = (moving_work, fixed_work) if swapped else (fixed_work, moving_work)
        start_internal = _inverse(start) if swapped else start
        tick = time.perf_counter()
        report("search", 0.0, f"initialising ({settings.initialize_transform_mode})")
        initial_internal, init_stage = _initialise(
            sampled, other, start_internal, plan, settings, should_cancel
        )
        timings["initialize"] = time.perf_counter() - tick

        other, plan = _crop_other(sampled, other, initial_internal, plan)
        metric_before = _metric_at(sampled, other, start_internal, plan, settings)
        tick = time.perf_counter()
        output = SimpleITKEngine().run(
            sampled,
            other,
            initial_internal,
            plan,
            settings,
            progress=lambda fraction, message: report("optimise", fraction, message),
            should_cancel=should_cancel,
        )
        timings["optimize"] = time.perf_counter() - tick
        metric_after = _metric_at(sampled, other, output.transform, plan, settings)

        report("check", 0.0, "checking the result")
        final = _inverse(output.transform) if swapped else output.transform
        final = _centred_on(final, image_center(fixed), plan.transform_stages)
        initial = _inverse(initial_internal) if swapped else initial_internal
        checks, failures = check_result(
            final, start, metric_before, metric_after, sampled, other, output.transform, settings,
            plan.search_spacing_mm,
        )
        warnings.extend(f"sanity check failed: {text}" for text in failures)
        timings["total"] = time.perf_counter() - began
        result = RegistrationResult(
            transform=final,
            initial_transform=initial,
            plan=plan,
            settings=settings,
            metric_before=np.nan if metric_before is None else metric_before,
            metric_after=np.nan if metric_after is None else metric_after,
            stages=[init_stage] + output.stages,
            timings=timings,
            warnings=warnings,
            sanity=checks,
            passed_sanity_checks=not failures,
            overlap_after=checks["overlap_after"]["value"],
        )
        report("check", 1.0, "done")
    return result, failures


def initialize_transform(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: Optional[RegistrationSettings] = None,
    initial_transform: Optional[sitk.Transform] = None,
) -> sitk.Transform:
    """Only the planning and initialisation steps: a fixed -> moving start for another engine.

    Used by the Slicer logic to hand BRAINSFit a start inside its capture range
    (``initializeTransformMode`` "Off" plus ``initialTransform``).
    """
    settings = settings or PRESETS["mri-ct"]
    start = _checked_start(initial_transform)
    plan = plan_registration(fixed, moving, settings, start)
    fixed_work, moving_work = _working_images(fixed, moving, plan)
    swapped = plan.small_fov_image == "moving"
    sampled, other = (moving_work, fixed_work) if swapped else (fixed_work, moving_work)
    internal, _ = _initialise(sampled, other, _inverse(start) if swapped else start, plan, settings, None)
    return _inverse(internal) if swapped else internal


def resample_moving(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, reference: Optional[sitk.Image] = None
) -> sitk.Image:
    """``moving`` resampled onto the ``reference`` grid (default: ``fixed``'s) through ``transform``.

    Integer inputs keep their pixel type (rounded), so the output is no larger than it must be.
    """
    grid = reference if reference is not None else fixed
    array = sitk.GetArrayViewFromImage(moving)
    background = float(np.min(array[::4, ::4, ::4]))
    pixel = moving.GetPixelID()
    float_types = (sitk.sitkFloat32, sitk.sitkFloat64)
    output_type = pixel if pixel in float_types else sitk.sitkFloat32
    resampled = sitk.Resample(moving, grid, transform, sitk.sitkLinear, background, output_type)
    if pixel not in float_types:
        resampled = sitk.Cast(sitk.Round(resampled), pixel)
    return resampled


def _working_images(fixed, moving, plan: RegistrationPlan) -> Tuple[sitk.Image, sitk.Image]:
    prepared = []
    for image, shrink in ((fixed, plan.fixed_shrink), (moving, plan.moving_shrink)):
        prepared.append(window_intensities(downsample(replace_non_finite(image), shrink)))
    return prepared[0], prepared[1]


def _initialise(sampled, other, start, plan, settings, should_cancel) -> Tuple[sitk.Transform, StageResult]:
    tick = time.perf_counter()
    mode = settings.initialize_transform_mode
    center = image_center(sampled)
    if mode == "search":
        outcome = search_start_pose(sampled, other, start, settings, plan.search_spacing_mm, should_cancel)
        return outcome.transform, StageResult(
            "Initialize (search)",
            outcome.candidates_scored,
            outcome.description,
            -outcome.score,
            time.perf_counter() - tick,
        )
    if mode == "Off":
        transform = rigid_from_matrix(transform_to_matrix(start), center)
        description = "initial transform used as given"
    else:
        kind = (
            sitk.CenteredTransformInitializerFilter.GEOMETRY
            if mode == "useGeometryAlign"
            else sitk.CenteredTransformInitializerFilter.MOMENTS
        )
        centred = sitk.CenteredTransformInitializer(sampled, other, sitk.VersorRigid3DTransform(), kind)
        transform = sitk.VersorRigid3DTransform(centred)
        description = f"{mode}: centres aligned"
    return transform, StageResult(f"Initialize ({mode})", 0, description, np.nan, time.perf_counter() - tick)


def _crop_other(sampled, other, transform, plan: RegistrationPlan) -> Tuple[sitk.Image, RegistrationPlan]:
    """Keep only the part of the large image that the small one can reach (plus a margin)."""
    footprint = apply_matrix(transform_to_matrix(transform), corner_points(sampled))
    roi = Box(footprint.min(axis=0), footprint.max(axis=0)).grow(plan.roi_margin_mm)
    try:
        cropped = crop_to_box(other, roi)
    except InputError:
        raise RegistrationFailedError(
            "after initialisation the two images do not overlap at all",
            "give an initial transform that roughly aligns them (e.g. from a few landmarks)",
        ) from None
    kept = np.prod(cropped.GetSize()) / np.prod(other.GetSize())
    note = (
        f"The {plan.large_fov_image} image is cropped to the {plan.small_fov_image} image's footprint plus "
        f"{plan.roi_margin_mm:g} mm ({kept:.0%} of its voxels kept)."
    )
    return cropped, plan.with_roi(roi, note)


def _metric_at(sampled, other, transform, plan, settings) -> Optional[float]:
    return mattes_value(
        sampled, other, sitk.AffineTransform(_as_affine(transform)), settings, plan.number_of_histogram_bins,
        plan.sampling_percentage, settings.random_seed,
    )


def _as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    matrix = transform_to_matrix(transform)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    affine.SetTranslation(matrix[:3, 3].tolist())
    return affine


def _inverse(transform: sitk.Transform) -> sitk.Transform:
    matrix = np.linalg.inv(transform_to_matrix(transform))
    if transform.GetName() in ("VersorRigid3DTransform", "Euler3DTransform") or _is_rigid(matrix):
        return rigid_from_matrix(matrix, np.zeros(3))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    affine.SetTranslation(matrix[:3, 3].tolist())
    return affine


def _is_rigid(matrix: np.ndarray) -> bool:
    rotation = matrix[:3, :3]
    return bool(np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) and np.linalg.det(rotation) > 0)


def _centred_on(transform: sitk.Transform, center: np.ndarray, stages) -> sitk.Transform:
    """Same mapping, rotation centre on the fixed image (as BRAINSFit writes its transforms)."""
    matrix = transform_to_matrix(transform)
    if stages == ("Rigid",):
        return rigid_from_matrix(matrix, center)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(center.tolist())
    affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    affine.SetTranslation((matrix[:3, 3] + matrix[:3, :3] @ center - center).tolist())
    return affine


def _checked_start(initial_transform: Optional[sitk.Transform]) -> sitk.Transform:
    if initial_transform is None:
        return sitk.AffineTransform(3)
    if not isinstance(initial_transform, sitk.Transform) or initial_transform.GetDimension() != 3:
        raise InputError(
            "the initial transform is not a 3D transform", "give a 3D rigid or affine transform file"
        )
    if not is_linear(initial_transform):
        raise InputError(
            f"the initial transform ({initial_transform.GetName()}) is not rigid or affine",
            "give a rigid or affine initial transform; for a deformable one, resample the moving image "
            "with it first and register the result",
        )
    matrix = transform_to_matrix(initial_transform)
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
        raise InputError("the initial transform is singular (it flattens space)", "check the transform file")
    return _as_affine(initial_transform)


def _progress_reporter(progress: Optional[ProgressCallback]):
    def report(phase: str, fraction: float, message: str) -> None:
        if progress is None:
            return
        lo, hi = _PHASES[phase]
        progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)

    return report


def _cancel_point(should_cancel, where: str) -> None:
    if should_cancel is not None and should_cancel():
        raise CancelledError(f"registration cancelled {where}", "nothing was written")
