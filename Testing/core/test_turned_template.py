"""The edge template turned in numpy is the one SimpleITK's resampling gives, on an oblique,
anisotropic grid, so that the search's correlation does not depend on which of the two turns it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import rotation_matrix
from MultimodalKneeRegistrationLib.search.turned_template import TemplateTurner

SIDE, SPACING = 15, 1.5


@pytest.fixture(scope="module")
def small_edges() -> sitk.Image:
    """A lopsided blob (no symmetry a wrong rotation could hide behind) on a turned, anisotropic grid."""
    image = sitk.GetImageFromArray(np.random.default_rng(5).random((18, 22, 26)).astype(np.float32))
    image = sitk.SmoothingRecursiveGaussian(image, 1.5)
    image.SetSpacing((1.1, 0.9, 1.3))
    image.SetOrigin((4.0, -7.0, 12.0))
    image.SetDirection(rotation_matrix(np.radians(35.0) * np.array([0.6, -0.8, 0.0])).ravel().tolist())
    return image


def _resampled_by_itk(edges: sitk.Image, center, rotation, direction, ball) -> np.ndarray:
    """The template as ``sitk.Resample`` turns it: template offset q -> small-image point center + R^T q."""
    grid = sitk.Image([SIDE] * 3, sitk.sitkFloat32)
    grid.SetSpacing([SPACING] * 3)
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((direction @ (-(SIDE - 1) / 2.0 * SPACING * np.ones(3))).tolist())
    back = sitk.AffineTransform(3)
    back.SetMatrix(rotation.T.ravel().tolist())
    back.SetTranslation(center.tolist())
    values = sitk.GetArrayFromImage(sitk.Resample(edges, grid, back, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    template = np.where(ball, values - values[ball].mean(), 0.0)
    return template / np.sqrt((template**2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_numpy_template_is_the_itk_one(small_edges, seed):
    rng = np.random.default_rng(seed)
    rotation = rotation_matrix(rng.normal(size=3))
    direction = rotation_matrix(np.radians(20.0) * np.array([0.0, 0.0, 1.0]))  # the large map's axes
    offsets = (np.arange(SIDE) - (SIDE - 1) / 2.0) * SPACING
    squared = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
    ball = squared <= (SIDE * SPACING / 2.0) ** 2
    size = np.array(small_edges.GetSize(), dtype=float)
    center = np.array(small_edges.TransformContinuousIndexToPhysicalPoint((size / 2.0 - 0.5).tolist()))
    ours = TemplateTurner(small_edges, center, direction, SIDE, SPACING, ball).turned(rotation)
    theirs = _resampled_by_itk(small_edges, center, rotation, direction, ball)
    assert ours.shape == theirs.shape == ball.shape
    assert np.all(ours[~ball] == 0.0)
    # The ball reaches past the image here (its diameter is wider than the image's short side), so
    # the zero outside and the half-voxel border are compared too.
    assert np.abs(ours - theirs).max() < 1e-5
    wrong = _resampled_by_itk(small_edges, center, rotation.T, direction, ball)
    assert np.abs(ours - wrong).max() > 0.05, "the check must tell a rotation from its inverse"
