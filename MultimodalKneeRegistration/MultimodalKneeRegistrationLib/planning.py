"""The registration plan: which image to downsample and by how much, what to crop, how to sample.

Why: BRAINSFit's defaults fail on MRI <-> micro-CT because the micro-CT voxels are ~10x smaller,
the MRI covers far more anatomy, and 0.2% sampling gives the metric too few points. The plan makes
the expert's manual choices from the images themselves and says why in plain sentences, so the user
can read (and override) every decision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .geometry import Box, physical_box
from .preprocessing import shrink_factors_for_spacing
from .settings import RegistrationSettings

#: Voxels of the small-field image at the coarse level where the multi-start search runs.
SEARCH_VOXEL_BUDGET = 60_000


@dataclass(frozen=True)
class RegistrationPlan:
    """Every choice made before optimisation starts (``explanation`` says why in sentences)."""

    fine_image: str
    large_fov_image: str
    spacing_ratio: float
    spacing_multiplier: float
    fixed_shrink: Tuple[int, int, int]
    moving_shrink: Tuple[int, int, int]
    fixed_working_spacing: Tuple[float, float, float]
    moving_working_spacing: Tuple[float, float, float]
    working_spacing_mm: float
    search_spacing_mm: float
    roi: Optional[Box]
    roi_margin_mm: float
    sampling_percentage: float
    metric_samples: int
    number_of_iterations: int
    number_of_histogram_bins: int
    shrink_factors: Tuple[int, ...]
    smoothing_sigmas_mm: Tuple[float, ...]
    transform_stages: Tuple[str, ...]
    initialize_transform_mode: str
    explanation: Tuple[str, ...]

    @property
    def small_fov_image(self) -> str:
        return "moving" if self.large_fov_image == "fixed" else "fixed"

    def with_roi(self, roi: Box, note: str) -> RegistrationPlan:
        return dataclasses.replace(self, roi=roi, explanation=self.explanation + (note,))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["roi"] = self.roi.to_dict() if self.roi is not None else None
        data["explanation"] = list(self.explanation)
        return data


def voxel_volume(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing()))


def plan_registration(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
    initial_transform: Optional[sitk.Transform] = None,
) -> RegistrationPlan:
    """Plan resolution, field of view and sampling for registering ``moving`` to ``fixed``.

    ``initial_transform`` is accepted for symmetry with the other steps; the ROI is filled in after
    initialisation (``RegistrationPlan.with_roi``), when the small image's footprint is known.

    Example:
        >>> plan = plan_registration(ct, mr, PRESETS["mri-ct"])  # doctest: +SKIP
        >>> print("\\n".join(plan.explanation))  # doctest: +SKIP
    """
    del initial_transform
    images = {"fixed": fixed, "moving": moving}
    fine = "fixed" if voxel_volume(fixed) <= voxel_volume(moving) else "moving"
    coarse = "moving" if fine == "fixed" else "fixed"
    fov = {name: physical_box(image).volume for name, image in images.items()}
    large = "fixed" if fov["fixed"] >= fov["moving"] else "moving"
    small = "moving" if large == "fixed" else "fixed"
    ratio = float((voxel_volume(images[coarse]) / voxel_volume(images[fine])) ** (1 / 3))
    explanation = [
        f"The {fine} image has the finer voxels ({_fmt(images[fine].GetSpacing())} mm vs "
        f"{_fmt(images[coarse].GetSpacing())} mm, {ratio:.1f}x finer per axis on average).",
        f"The {large} image covers the larger field of view ({fov[large] / 1000:.0f} mL vs "
        f"{fov[small] / 1000:.0f} mL); the metric samples the {small} image so that its samples "
        f"land inside the {large} one.",
    ]

    budget_spacing = (fov[small] / settings.working_voxel_budget) ** (1 / 3)
    fine_min = min(images[fine].GetSpacing())
    coarse_min = min(images[coarse].GetSpacing())
    working = max(coarse_min, budget_spacing, fine_min)
    working = min(working, max(settings.max_working_spacing_mm, fine_min))
    if settings.spacing_multiplier is not None:
        multiplier = float(settings.spacing_multiplier)
        fine_shrink = tuple(max(1, int(round(multiplier))) for _ in range(3))
        explanation.append(f"Spacing multiplier {multiplier:g} for the {fine} image was given by the user.")
    else:
        multiplier = round(working / fine_min, 2)
        fine_shrink = shrink_factors_for_spacing(images[fine].GetSpacing(), working)
        explanation.append(
            f"The {fine} image is downsampled by {_fmt(fine_shrink, 0)} voxels per block (Crop Volume spacing "
            f"multiplier ~{multiplier:g}) to ~{working:.2f} mm: finer would not add information the "
            f"{coarse} image can match, and it keeps each working image near "
            f"{settings.working_voxel_budget / 1e6:.1f} M voxels."
        )
    coarse_shrink = shrink_factors_for_spacing(images[coarse].GetSpacing(), working)
    shrinks = {fine: fine_shrink, coarse: coarse_shrink}
    if any(f > 1 for f in coarse_shrink):
        explanation.append(f"The {coarse} image is block-averaged by {_fmt(coarse_shrink, 0)} to match.")
    spacing = {n: tuple(float(s * f) for s, f in zip(images[n].GetSpacing(), shrinks[n])) for n in images}

    small_voxels = fov[small] / float(np.prod(spacing[small]))
    if settings.sampling_percentage is not None:
        percentage = float(settings.sampling_percentage)
        explanation.append(f"Sampling percentage {percentage:g} was given by the user.")
    else:
        wanted = float(np.clip(0.1 * small_voxels, settings.min_metric_samples, settings.max_metric_samples))
        percentage = float(min(1.0, wanted / max(small_voxels, 1.0)))
        explanation.append(
            f"The metric samples {percentage:.3g} of the {small} working voxels (~{int(percentage * small_voxels):,} "
            f"points, never BRAINSFit's 0.002 default that left too few samples)."
        )
    search_spacing = max(working * 2, (fov[small] / SEARCH_VOXEL_BUDGET) ** (1 / 3))
    if settings.initialize_transform_mode == "search":
        explanation.append(
            f"Initialisation: multi-start search over rotations up to {settings.search_max_angle_deg:g} deg and "
            f"positions, scored by mutual information at {search_spacing:.1f} mm."
        )
    return RegistrationPlan(
        fine_image=fine,
        large_fov_image=large,
        spacing_ratio=round(ratio, 3),
        spacing_multiplier=multiplier,
        fixed_shrink=tuple(shrinks["fixed"]),
        moving_shrink=tuple(shrinks["moving"]),
        fixed_working_spacing=spacing["fixed"],
        moving_working_spacing=spacing["moving"],
        working_spacing_mm=round(working, 4),
        search_spacing_mm=round(search_spacing, 3),
        roi=None,
        roi_margin_mm=settings.roi_margin_mm,
        sampling_percentage=percentage,
        metric_samples=int(percentage * small_voxels),
        number_of_iterations=settings.number_of_iterations,
        number_of_histogram_bins=settings.number_of_histogram_bins,
        shrink_factors=tuple(settings.shrink_factors),
        smoothing_sigmas_mm=tuple(settings.smoothing_sigmas_mm),
        transform_stages=tuple(settings.transform_stages),
        initialize_transform_mode=settings.initialize_transform_mode,
        explanation=tuple(explanation),
    )


def _fmt(values, digits: int = 2) -> str:
    return "x".join(f"{v:.{digits}f}" for v in values)
