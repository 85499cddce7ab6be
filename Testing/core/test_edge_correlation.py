"""``search.edge_correlation`` finds a small, turned CT-like crop inside a large MRI-like image.

The phantom renders both modalities with different intensity mappings, so only shared edges can
find the crop. The crop's pose is known: it shows the phantom at ``truth(x)`` for its own points
``x``, so the pose that maps crop points to large-image points is ``truth`` itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import rotation_angle_deg, transform_to_matrix
from MultimodalKneeRegistrationLib.search.edge_correlation import correlation_spacing, edge_map
from MultimodalKneeRegistrationLib.search.pose_levels import search_levels
from MultimodalKneeRegistrationLib.settings import SearchSettings
from MultimodalKneeRegistrationLib.synthetic.phantom import KneePhantom, rigid_transform
from MultimodalKneeRegistrationLib.synthetic.poses import axis_angle_matrix

#: Where the crop sits: beside the joint line, 14 mm off the large image's centre.
CROP_CENTER = (8.0, 12.0, 4.0)


@pytest.fixture(scope="module")
def large_mri():
    return KneePhantom(seed=3).render("mri", (150, 150, 50), (1.0, 1.0, 2.5), center=(0.0, 5.0, 10.0))


def _crop(truth: sitk.Transform) -> sitk.Image:
    """A 32 mm CT-like cube at 0.4 mm showing the phantom at ``truth(x)``."""
    return KneePhantom(seed=4).render("ct", (80, 80, 80), (0.4, 0.4, 0.4), center=CROP_CENTER, transform=truth)


def correlation_candidates(small, large, rotations, spacing, count=3, workers=1, score=None):
    """The coarse-to-fine search's final candidates, ``count`` of them (ranked by NCC without ``score``)."""
    return search_levels(small, large, rotations, spacing, SearchSettings(final_candidates=count), 34.0,
                         score=score, workers=workers).candidates


def _rotations_around(true_rotation: np.ndarray, step_deg: float = 20.0):
    """The true rotation among its neighbours 20 deg away about x, y and z (7 in all)."""
    rotations = [true_rotation]
    for axis in np.eye(3):
        for sign in (-1.0, 1.0):
            rotations.append(true_rotation @ axis_angle_matrix(axis, sign * step_deg))
    return rotations


def _miss(found, true_matrix):
    """(mm at the crop's centre, deg) between a found pose and the truth."""
    middle = np.array([*CROP_CENTER, 1.0])
    return (np.linalg.norm((found.matrix @ middle - true_matrix @ middle)[:3]),
            rotation_angle_deg(np.linalg.inv(true_matrix) @ found.matrix))


@pytest.mark.parametrize("angle_deg", [0.0, 25.0])
def test_the_true_pose_ranks_first(large_mri, angle_deg):
    truth = rigid_transform((0.3, -0.5, 0.8), angle_deg, (0.0, 0.0, 0.0), CROP_CENTER)
    crop = _crop(truth)
    true_matrix = transform_to_matrix(truth)
    spacing = correlation_spacing(crop, large_mri, 1.0)
    # Order the rotations so that the true one is not simply the first tried.
    rotations = _rotations_around(true_matrix[:3, :3])[::-1]
    found = correlation_candidates(crop, large_mri, rotations, spacing, count=3)
    assert found, "no candidate at all"
    miss_mm, turn_deg = _miss(found[0], true_matrix)
    # The last level's rotations are 4 deg apart (covering radius 3.8 deg); shifts are found on the correlation grid.
    assert turn_deg <= 4.0, f"picked a rotation {turn_deg:.1f} deg from the truth"
    assert miss_mm <= np.sqrt(3) * spacing, f"{miss_mm:.2f} mm from the truth (grid {spacing:.2f} mm)"
    assert found[0].ncc > 0.5
    assert all(found[0].ncc >= other.ncc for other in found[1:])


def test_a_rotation_grid_that_misses_the_truth_is_refined(large_mri):
    """No rotation tried is within 15 deg of the truth; the refinement still gets within 5 deg."""
    truth = rigid_transform((0.3, -0.5, 0.8), 25.0, (0.0, 0.0, 0.0), CROP_CENTER)
    crop = _crop(truth)
    true_matrix = transform_to_matrix(truth)
    axes = [(1.0, 1.0, 0.0), (0.0, 1.0, -1.0), (1.0, -1.0, 1.0)]
    rotations = [true_matrix[:3, :3] @ axis_angle_matrix(axis, 15.0) for axis in axes]
    spacing = correlation_spacing(crop, large_mri, 1.0)
    found = correlation_candidates(crop, large_mri, rotations, spacing, count=1)
    miss_mm, turn_deg = _miss(found[0], true_matrix)
    assert turn_deg <= 5.0, f"refined to {turn_deg:.1f} deg from the truth (started 15 deg off)"
    assert miss_mm <= 2 * spacing, f"{miss_mm:.2f} mm from the truth (grid {spacing:.2f} mm)"


def test_candidates_are_distinct_poses(large_mri):
    truth = rigid_transform((0.0, 0.0, 1.0), 0.0, (0.0, 0.0, 0.0), CROP_CENTER)
    crop = _crop(truth)
    spacing = correlation_spacing(crop, large_mri, 1.0)
    found = correlation_candidates(crop, large_mri, _rotations_around(np.eye(3)), spacing, count=4)
    assert 1 <= len(found) <= 4
    middle = np.array([*CROP_CENTER, 1.0])
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            apart = np.linalg.norm((a.matrix @ middle - b.matrix @ middle)[:3])
            turn = rotation_angle_deg(np.linalg.inv(a.matrix) @ b.matrix)
            assert apart > 6.0 or turn > 10.0


def test_a_small_image_larger_than_the_large_one_gives_no_candidate(large_mri):
    huge = KneePhantom().render("ct", (60, 60, 60), (4.0, 4.0, 4.0))
    assert correlation_candidates(huge, large_mri, [np.eye(3)], 4.0) == []


def test_correlation_spacing_puts_about_twenty_voxels_across_the_small_image(large_mri):
    crop = _crop(rigid_transform((0.0, 0.0, 1.0), 0.0, (0.0, 0.0, 0.0)))
    spacing = correlation_spacing(crop, large_mri, 0.5)
    assert spacing == pytest.approx(80 * 0.4 / 20, rel=0.05)
    # Never finer than asked for.
    assert correlation_spacing(crop, large_mri, 3.0) == 3.0


def test_edge_map_is_bright_on_boundaries_and_dark_in_flat_regions():
    image = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    array = np.zeros((40, 40, 40), np.float32)
    array[:, :, 20:] = 100.0  # a step along x at index 20
    image = sitk.GetImageFromArray(array)
    edges = sitk.GetArrayFromImage(edge_map(image, 1.0))
    assert edges[20, 20, 19:21].min() > 10 * edges[20, 20, 2:6].max()
