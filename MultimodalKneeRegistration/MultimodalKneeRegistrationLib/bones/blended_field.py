"""One displacement field that moves every bone rigidly and blends smoothly in between.

Why: per-bone registration gives one rigid transform per bone, but some users want a single
resampled volume (or one transform to hand to another tool). This field is exactly each bone's
rigid motion inside that bone and an inverse-distance-weighted mix in the soft tissue between.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import apply_matrix, coarser_grid, index_to_physical_matrix, transform_to_matrix
from .masks import BoneLabels
from .per_bone import PerBoneResult


def blended_displacement_field(per_bone: PerBoneResult, labels: BoneLabels,
                               reference: Optional[sitk.Image] = None,
                               spacing_mm: float = 2.0) -> sitk.DisplacementFieldTransform:
    """A displacement field (fixed -> moving) that moves every bone rigidly and blends in between.

    Each point takes a weighted mean of the bones' displacements, weighted by the inverse squared
    distance to each bone, so it is exactly one bone's rigid motion inside that bone and a smooth
    mix in the soft tissue. Needs labels on the fixed image. ``reference`` (default: the labels'
    grid coarsened to ``spacing_mm``) is the field's grid.

    Example:
        >>> field = blended_displacement_field(per_bone, labels)  # doctest: +SKIP
        >>> sitk.WriteTransform(field, "knee_field.h5")  # doctest: +SKIP
    """
    if per_bone.labels_space != "fixed":
        raise InputError("a blended displacement field needs the bone labels on the fixed image",
                         "segment the fixed image (or map the segmentation onto it) and run again")
    if reference is None:
        reference = _covering_grid(labels.image, spacing_mm)
    size = reference.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    points = apply_matrix(index_to_physical_matrix(reference), index)
    total = np.zeros((len(points), 3))
    weights = np.zeros(len(points))
    for bone in per_bone.bones:
        distance = sitk.SignedMaurerDistanceMap(labels.mask(bone.label), insideIsPositive=False,
                                                squaredDistance=False, useImageSpacing=True)
        on_grid = sitk.Resample(distance, reference, sitk.Transform(), sitk.sitkLinear, 1e4, sitk.sitkFloat64, True)
        d = np.maximum(sitk.GetArrayFromImage(on_grid).transpose(2, 1, 0).reshape(-1), 0.0)
        w = 1.0 / (d * d + 1e-6)
        total += w[:, None] * (apply_matrix(transform_to_matrix(bone.transform), points) - points)
        weights += w
    displacement = (total / weights[:, None]).reshape(size[0], size[1], size[2], 3).transpose(2, 1, 0, 3)
    image = sitk.GetImageFromArray(displacement.astype(np.float64), isVector=True)
    image.CopyInformation(reference)
    return sitk.DisplacementFieldTransform(image)


def _covering_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """A grid with ``spacing_mm`` voxels (or the image's, if coarser) covering ``image``'s field of view."""
    spacing = np.array(image.GetSpacing())
    new_spacing = np.maximum(spacing, spacing_mm)
    return coarser_grid(image, new_spacing, np.ceil(np.array(image.GetSize()) * spacing / new_spacing).astype(int))
