"""What the two images are, and what that means for registering them: sizes, grids, overlap.

Why: the expert's first step was always to look at the headers: "the micro-CT voxels are 10x
smaller", "the MRI covers the whole knee, the micro-CT only the tibial plateau", "they do not even
overlap". This module says the same things in plain sentences, for ``knee-register inspect``, the
report and the Slicer panel, and never crashes on odd images (constant, NaN): it reports them. Which
image is fine or small is ``roles.ImageRoles``'s to say, as for the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import (
    Box,
    inverse_transform,
    overlap_fraction,
    physical_box,
)
from ..io.sources import pixels
from .roles import ImageRoles

#: About this many voxels are read for the intensity statistics (a strided subsample).
STAT_SAMPLES = 1_000_000


def _fmt(values, digits: int = 3) -> str:
    return " x ".join(f"{v:.{digits}g}" for v in values)


@dataclass(frozen=True)
class ImageSummary:
    """Header facts and robust intensity statistics of one image."""

    name: str
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    extent: Box
    voxel_count: int
    voxel_volume_mm3: float
    fov_volume_mm3: float
    pixel_type: str
    intensity_min: float
    intensity_max: float
    intensity_p1: float
    intensity_p99: float
    non_finite_fraction: float
    warnings: Tuple[str, ...]

    @property
    def fov_size_mm(self) -> Tuple[float, ...]:
        return tuple(float(n * s) for n, s in zip(self.size, self.spacing))

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name, "size": list(self.size), "spacing_mm": list(self.spacing),
            "origin_mm": list(self.origin), "direction": list(self.direction),
            "extent_lps": self.extent.to_dict(), "voxel_count": self.voxel_count,
            "voxel_volume_mm3": self.voxel_volume_mm3, "fov_size_mm": list(self.fov_size_mm),
            "fov_volume_mm3": self.fov_volume_mm3, "pixel_type": self.pixel_type,
            "intensity": {"min": self.intensity_min, "p1": self.intensity_p1,
                          "p99": self.intensity_p99, "max": self.intensity_max},
            "non_finite_fraction": self.non_finite_fraction, "warnings": list(self.warnings),
        }

    def format_summary(self) -> str:
        oblique = not np.allclose(np.array(self.direction).reshape(3, 3), np.eye(3), atol=1e-6)
        lines = [
            f"{self.name}: {_fmt(self.size, 6)} voxels of {_fmt(self.spacing)} mm ({self.pixel_type}, "
            f"{self.voxel_count / 1e6:.1f} M voxels)",
            f"  field of view {_fmt(self.fov_size_mm, 4)} mm = {self.fov_volume_mm3 / 1e6:.3g} L; "
            f"voxel volume {self.voxel_volume_mm3:.3g} mm^3",
            "  extent (LPS mm) " + ", ".join(
                f"{axis} {lo:.1f}..{hi:.1f}"
                for axis, lo, hi in zip("xyz", self.extent.lower, self.extent.upper)
            ) + ("; oblique axes" if oblique else ""),
            f"  intensity min {self.intensity_min:.4g}, 1st percentile {self.intensity_p1:.4g}, "
            f"99th percentile {self.intensity_p99:.4g}, max {self.intensity_max:.4g}",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _intensity_sample(image: sitk.Image) -> np.ndarray:
    """About ``STAT_SAMPLES`` voxels on a regular stride (a view: no copy of the whole image)."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((array.size / STAT_SAMPLES) ** (1.0 / array.ndim))))
    return np.asarray(array[(slice(None, None, step),) * array.ndim], dtype=np.float64).ravel()


def summarize_image(image: sitk.Image, name: str = "image") -> ImageSummary:
    """Header and intensity facts of ``image``; odd contents become warnings, never exceptions.

    Example:
        >>> print(summarize_image(sitk.ReadImage("CT.nrrd"), "fixed").format_summary())
    """
    size = tuple(int(n) for n in image.GetSize())
    spacing = tuple(float(s) for s in image.GetSpacing())
    voxel_volume = float(np.prod(spacing))
    warnings = []
    if image.GetNumberOfComponentsPerPixel() != 1:
        warnings.append(f"{name} has {image.GetNumberOfComponentsPerPixel()} values per voxel; "
                        "statistics use all of them")
    sample = _intensity_sample(pixels(image))
    finite = sample[np.isfinite(sample)]
    non_finite = 1.0 - finite.size / max(sample.size, 1)
    if finite.size == 0:
        low = high = p1 = p99 = float("nan")
        warnings.append(f"{name} has no finite voxel values (all NaN or infinite): it cannot be registered")
    else:
        low, high = float(finite.min()), float(finite.max())
        if high <= low and finite.size < image.GetNumberOfPixels() and non_finite == 0:
            extremes = sitk.MinimumMaximumImageFilter()  # a subsample can miss a small object
            extremes.Execute(pixels(image))
            low, high = float(extremes.GetMinimum()), float(extremes.GetMaximum())
        p1, p99 = (float(v) for v in np.percentile(finite, [1.0, 99.0]))
        if non_finite > 0:
            warnings.append(f"{name} has NaN or infinite voxels (about {100 * non_finite:.2g}% of them); "
                            "they will be treated as the lowest intensity")
        if high <= low:
            warnings.append(f"{name} looks constant (every sampled voxel is {low:.6g}): there is nothing to "
                            "align; check that the right volume was loaded")
        elif p99 <= p1:
            warnings.append(f"{name} is almost constant (98% of voxels are {p1:.6g}): registration may "
                            "have too little to work with")
    if min(spacing) > 0 and max(spacing) / min(spacing) >= 3.0:
        warnings.append(f"{name} voxels are {max(spacing) / min(spacing):.1f}x longer along one axis "
                        f"({_fmt(spacing)} mm): thick slices limit the accuracy along that axis")
    return ImageSummary(
        name=name, size=size, spacing=spacing, origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()), extent=physical_box(image),
        voxel_count=int(np.prod(size)), voxel_volume_mm3=voxel_volume,
        fov_volume_mm3=float(np.prod(size)) * voxel_volume, pixel_type=image.GetPixelIDTypeAsString(),
        intensity_min=low, intensity_max=high, intensity_p1=p1, intensity_p99=p99,
        non_finite_fraction=float(non_finite), warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class PairInspection:
    """Both summaries plus how the two images relate at the start transform."""

    fixed: ImageSummary
    moving: ImageSummary
    spacing_ratio: float
    voxel_volume_ratio: float
    fov_volume_ratio: float
    fixed_in_moving: float
    moving_in_fixed: float
    initial_transform: str
    warnings: Tuple[str, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "fixed": self.fixed.to_dict(), "moving": self.moving.to_dict(),
            "spacing_ratio_moving_to_fixed": self.spacing_ratio,
            "voxel_volume_ratio_moving_to_fixed": self.voxel_volume_ratio,
            "fov_volume_ratio_moving_to_fixed": self.fov_volume_ratio,
            "start_overlap": {"fixed_fov_inside_moving": self.fixed_in_moving,
                              "moving_fov_inside_fixed": self.moving_in_fixed,
                              "start_transform": self.initial_transform},
            "warnings": list(self.warnings),
        }

    def format_summary(self) -> str:
        lines = [self.fixed.format_summary(), self.moving.format_summary(),
                 f"pair ({self.initial_transform} start): moving voxels are {self.voxel_volume_ratio:.3g}x "
                 f"the volume of fixed's; moving's field of view is {self.fov_volume_ratio:.3g}x fixed's; "
                 f"{100 * self.fixed_in_moving:.0f}% of fixed's field of view lies inside moving's and "
                 f"{100 * self.moving_in_fixed:.0f}% of moving's inside fixed's"]
        lines += [f"  note: {w}" for w in self.warnings]
        return "\n".join(lines)


def _ratio_words(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 9.5 else f"{ratio:.1f}x"


def inspect_pair(fixed: sitk.Image, moving: sitk.Image, initial_transform: Optional[sitk.Transform] = None,
                 initialize_mode: str = "search") -> PairInspection:
    """Summaries of both images and plain-sentence notes on how they relate.

    ``initial_transform`` maps fixed points to moving points (identity when None);
    ``initialize_mode`` (the settings' ``initialize_transform_mode``) only changes the advice.

    Example:
        >>> print(inspect_pair(ct, mr).format_summary())
    """
    fixed_summary, moving_summary = summarize_image(fixed, "fixed"), summarize_image(moving, "moving")
    transform = initial_transform if initial_transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    start = "given initial transform" if initial_transform is not None else "identity"
    fixed_in_moving = overlap_fraction(fixed, moving, transform)
    moving_in_fixed = overlap_fraction(moving, fixed, inverse_transform(transform))
    spacing_ratio = float((np.prod(moving_summary.spacing) / np.prod(fixed_summary.spacing)) ** (1 / 3))
    voxel_ratio = moving_summary.voxel_volume_mm3 / fixed_summary.voxel_volume_mm3
    fov_ratio = moving_summary.fov_volume_mm3 / fixed_summary.fov_volume_mm3
    notes = _role_notes(ImageRoles.of(fixed, moving), {"fixed": fixed_summary, "moving": moving_summary})
    searching = initialize_mode == "search"
    if fixed_in_moving == 0.0 and moving_in_fixed == 0.0:
        notes.append(f"the images do not overlap at the start ({start}); " + (
            "the initial search will look for the moving image" if searching else
            f"initialisation '{initialize_mode}' may not find it: use the search or a better "
            "initial transform"))
    elif max(fixed_in_moving, moving_in_fixed) < 0.5:
        notes.append(f"the images overlap little at the start ({100 * fixed_in_moving:.0f}% of fixed's and "
                     f"{100 * moving_in_fixed:.0f}% of moving's field of view)" + (
                         "; the initial search will bring them together" if searching else ""))
    return PairInspection(fixed_summary, moving_summary, spacing_ratio, float(voxel_ratio), float(fov_ratio),
                          float(fixed_in_moving), float(moving_in_fixed), start, tuple(notes))


def _role_notes(roles: ImageRoles, summaries: Dict[str, ImageSummary]) -> list:
    """What the roles (``roles``: fine/coarse, small/large) mean for this pair, in words."""
    notes = []
    finer = summaries[roles.coarse].voxel_volume_mm3 / summaries[roles.fine].voxel_volume_mm3
    if finer >= 3.0:
        notes.append(f"{roles.fine} voxels are {_ratio_words(finer)} smaller than {roles.coarse}'s: "
                     "it will be downsampled")
    share = summaries[roles.small].fov_volume_mm3 / summaries[roles.large].fov_volume_mm3
    if share <= 0.5:
        notes.append(f"{roles.small}'s field of view is {100 * share:.2g}% of {roles.large}'s; {roles.large} "
                     f"will be cropped to the {roles.small} ROI")
    return notes


def format_summary(item: Any) -> str:
    """Human-readable text of an ``ImageSummary`` or ``PairInspection``."""
    return item.format_summary()
