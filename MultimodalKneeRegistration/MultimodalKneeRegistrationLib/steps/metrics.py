"""Similarity values the report quotes: the one Mattes MI evaluation and the explained fraction.

Why: every "metric before / after" in a report, whatever the engine, comes from one Mattes MI
evaluation on the working images (``mattes_value``), so numbers compare across engines and stages.
The search's fast scorer (``search.scorer.MutualInformationScorer``) ranks poses; here it only
gives the sanity check's explained fraction.
"""

from __future__ import annotations

from typing import Optional

import SimpleITK as sitk

from ..execution import new_registration_method, without_gradient_images
from ..search.scorer import MutualInformationScorer
from .preprocessing import downsample, shrink_factors_for_spacing


def explained_fraction(sampled: sitk.Image, other: sitk.Image, transform: sitk.Transform, spacing_mm: float,
                       mask: Optional[sitk.Image] = None) -> float:
    """``MutualInformationScorer.explained_fraction`` on copies block-averaged to ``spacing_mm``
    (over ``sampled``'s voxels inside ``mask`` when given).

    Measured here: 0.47-0.49 for correct phantom results and 0.12 for a pose 15 mm off; 0.26 for
    the porcine CT/MR pair at its reference (0.15 at the identity start).
    """
    scorer = MutualInformationScorer(
        downsample(sampled, shrink_factors_for_spacing(sampled.GetSpacing(), spacing_mm)),
        downsample(other, shrink_factors_for_spacing(other.GetSpacing(), spacing_mm)),
        mask=mask,
    )
    return scorer.explained_fraction(transform)


def mattes_value(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    execution,
    bins: int,
    sampling_fraction: Optional[float],
    seed: int,
    mask: Optional[sitk.Image] = None,
) -> Optional[float]:
    """Mattes MI (negative; lower is better) of ``moving`` seen from ``fixed`` through ``transform``.

    ``sampling_fraction`` of the fixed voxels at random (``seed``), or every voxel when ``None``;
    with ``mask``, only the fixed voxels inside it count (one bone). ``None`` when no sample lands in
    the moving image (no overlap at this pose: no value).
    """
    method = without_gradient_images(new_registration_method(execution))
    method.SetMetricAsMattesMutualInformation(bins)
    if mask is not None:
        method.SetMetricFixedMask(mask)
    if sampling_fraction is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(sampling_fraction, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return None
