"""The search scorer's trilinear interpolation agrees with ITK's linear interpolator, faces and thin axes included.

Why: the scorer gathers the eight corners in one ``take`` with steps computed once per volume; a wrong step
(an axis one voxel thin) or a point on the upper face would shift every score the search ranks by.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.search.scorer import trilinear


@pytest.mark.parametrize("shape", [(7, 9, 11), (1, 6, 5), (6, 1, 5), (6, 5, 1), (2, 2, 2)])
def test_trilinear_matches_itk_inside_and_refuses_outside(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    volume = rng.normal(size=shape).astype(np.float32)
    upper = np.array(shape[::-1], dtype=float) - 1.0  # (x, y, z)
    points = rng.uniform(-0.5, 1.2, size=(400, 3)) * np.maximum(upper, 1.0)
    points[:3] = [upper, np.zeros(3), upper * [1.0, 0.0, 0.5]]  # corners and a face, exactly
    values, inside = trilinear(volume, points)
    expected_inside = np.all((points >= 0.0) & (points <= upper), axis=1)
    assert np.array_equal(inside, expected_inside) and inside[:3].all() and (~inside).any()
    image = sitk.GetImageFromArray(volume)
    expected = [image.EvaluateAtContinuousIndex(p.tolist(), sitk.sitkLinear) for p in points[inside]]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
