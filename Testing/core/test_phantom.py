"""The synthetic knee phantom: anatomy, modalities, partial volume, and the direction of its truth.

The registration tests trust the phantom's ``true_transform``; these tests make sure it means
"fixed LPS point -> moving LPS point showing the same anatomy" on any grid (oblique, flipped,
anisotropic), and that SimpleITK's resampling agrees with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from core_test_helpers import build_grid, rotation_matrix
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.geometry import apply_matrix, index_to_physical_matrix, transform_to_matrix
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair
from MultimodalKneeRegistrationLib.synthetic.phantom import BONES, INTENSITIES, LABELS, KneePhantom, rigid_transform

PATELLA = list(BONES["patella"])
#: A rigid "truth" with every component non-zero.
TRUTH = rigid_transform((0.3, 1.0, 0.2), 25.0, (8.0, -12.0, 5.0), center=(4.0, -2.0, 7.0))


def centroid_mm(labels: sitk.Image, values) -> np.ndarray:
    array = sitk.GetArrayFromImage(labels)
    k, j, i = np.nonzero(np.isin(array, values))
    assert len(i) > 100, "structure not in the field of view"
    indices = np.stack([i, j, k], axis=1).astype(float)
    return apply_matrix(index_to_physical_matrix(labels), indices).mean(axis=0)


def overlap_mask(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> np.ndarray:
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    return sitk.GetArrayFromImage(sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor)) > 0


@pytest.fixture(scope="module")
def phantom() -> KneePhantom:
    return KneePhantom()


def test_anatomy_is_knee_like(phantom):
    labels = phantom.labels((100, 100, 110), (1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0))
    counts = np.bincount(sitk.GetArrayFromImage(labels).ravel(), minlength=len(LABELS))
    assert np.all(counts > 0), f"a structure is missing: {dict(zip(LABELS, counts))}"
    femur, tibia = centroid_mm(labels, list(BONES["femur"])), centroid_mm(labels, list(BONES["tibia"]))
    patella, fibula = centroid_mm(labels, PATELLA), centroid_mm(labels, list(BONES["fibula"]))
    assert femur[2] > 15 and tibia[2] < -15, "femur superior (+z), tibia inferior"
    assert patella[1] < femur[1] - 20, "patella anterior (-y) of the femur"
    assert fibula[0] > tibia[0] + 20, "fibula on one side only (+x), so the phantom is not mirror-symmetric"
    # The patella (cortex + marrow) is an ellipsoid of radii 21 x 9 x 24 mm, wholly inside this grid.
    assert counts[PATELLA].sum() == pytest.approx(4.0 / 3.0 * math.pi * 21 * 9 * 24, rel=0.01)


def test_modalities_map_tissues_non_monotonically(phantom):
    grid = build_grid((80, 80, 60), (1.0, 1.0, 1.0), center=(0.0, 5.0, 5.0))
    labels = sitk.GetArrayFromImage(phantom.labels_like(grid))
    ct_image = phantom.render_like(grid, "ct")
    ct = sitk.GetArrayFromImage(ct_image)
    mri = sitk.GetArrayFromImage(phantom.render_like(grid, "mri"))
    tissues = {"fat": [1], "muscle": [2], "cortex": [4, 6, 8, 10], "marrow": [5, 7, 9, 11]}
    ct_median = {t: np.median(ct[np.isin(labels, v)]) for t, v in tissues.items()}
    mri_median = {t: np.median(mri[np.isin(labels, v)]) for t, v in tissues.items()}
    assert ct_median["cortex"] > ct_median["marrow"] > ct_median["muscle"] > ct_median["fat"]
    assert mri_median["fat"] > mri_median["marrow"] > mri_median["muscle"] > mri_median["cortex"]
    assert ct_image.GetPixelID() == sitk.sitkInt16
    assert mri.dtype == np.uint16 and mri.min() >= 0
    assert 5 < np.std(ct[labels == LABELS["fat"]]) < 60, "CT has noise"


def test_noise_is_reproducible_per_seed():
    grid = build_grid((30, 30, 10), (2.0, 2.0, 2.0))
    first = sitk.GetArrayFromImage(KneePhantom(seed=3).render_like(grid, "mri"))
    again = sitk.GetArrayFromImage(KneePhantom(seed=3).render_like(grid, "mri"))
    other = sitk.GetArrayFromImage(KneePhantom(seed=4).render_like(grid, "mri"))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_partial_volume_matches_block_average_of_fine_rendering(phantom):
    # Each 1 x 1 x 2 mm voxel is exactly 4 x 4 x 8 voxels of the 0.25 mm grid.
    center = (5.0, 10.0, 0.0)
    fine = phantom.render("ct", (96, 96, 96), (0.25, 0.25, 0.25), center=center, noise=False)
    coarse = phantom.render("ct", (24, 24, 12), (1.0, 1.0, 2.0), center=center, noise=False)
    truth = sitk.GetArrayFromImage(fine).astype(float).reshape(12, 8, 24, 4, 24, 4).mean(axis=(1, 3, 5))
    hard_labels = sitk.GetArrayFromImage(phantom.labels((24, 24, 12), (1.0, 1.0, 2.0), center=center))
    values = np.array([INTENSITIES["ct"]["air" if n == "background" else n.split("_")[-1]] for n in LABELS])
    partial_error = np.abs(sitk.GetArrayFromImage(coarse) - truth).mean()
    hard_error = np.abs(values[hard_labels] - truth).mean()
    assert partial_error < 0.25 * hard_error, (partial_error, hard_error)


def test_flipped_grid_shows_the_same_voxels_reversed(phantom):
    plain = build_grid((40, 30, 20), (1.0, 1.5, 2.0), origin=(-20.0, -20.0, -15.0))
    # Same voxel centres, i axis reversed: start at the far end and step in -x.
    flipped = build_grid((40, 30, 20), (1.0, 1.5, 2.0), direction=np.diag([-1.0, 1.0, 1.0]),
                         origin=(19.0, -20.0, -15.0))
    a = sitk.GetArrayFromImage(phantom.render_like(plain, "ct", noise=False)).astype(int)
    b = sitk.GetArrayFromImage(phantom.render_like(flipped, "ct", noise=False)).astype(int)
    assert np.abs(a - b[:, :, ::-1]).max() <= 1  # rounding only


FLIP_X = np.diag([-1.0, 1.0, 1.0]) @ rotation_matrix((0, 0, 1), 90)  # determinant -1
GEOMETRIES = {
    # name: (fixed size, spacing, direction), (moving size, spacing, direction)
    "plain": (((90, 90, 90), (1.0, 1.0, 1.0), None), ((70, 70, 45), (1.3, 1.3, 2.0), None)),
    "oblique-fixed": (((90, 90, 90), (1.0, 1.0, 1.0), rotation_matrix((1.0, 1.0, 0.3), 20.0)),
                      ((70, 70, 45), (1.3, 1.3, 2.0), None)),
    "flipped-moving": (((90, 90, 90), (1.0, 1.0, 1.0), None),
                       ((70, 70, 45), (1.3, 1.3, 2.0), FLIP_X)),
    "ras-like-anisotropic": (((100, 100, 36), (0.9, 0.9, 2.5), np.diag([-1.0, -1.0, 1.0])),
                             ((120, 120, 120), (0.75, 0.75, 0.75), rotation_matrix((0.2, -1.0, 0.5), 35.0))),
    "permuted-both": (((90, 45, 90), (1.0, 2.0, 1.0), np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])),
                      ((45, 70, 70), (2.0, 1.3, 1.3), np.array([[0, 0, -1.0], [1, 0, 0], [0, -1, 0]]))),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_known_transform_maps_fixed_anatomy_onto_moving_anatomy(phantom, name):
    (fsize, fspacing, fdir), (msize, mspacing, mdir) = GEOMETRIES[name]
    center = (0.0, -20.0, 25.0)  # the patella lies wholly inside both fields of view
    fixed = build_grid(fsize, fspacing, fdir, center=center)
    moving = build_grid(msize, mspacing, mdir, center=TRUTH.TransformPoint(center))
    fixed_labels = phantom.labels_like(fixed)
    moving_labels = phantom.labels_like(moving, TRUTH.GetInverse())
    mapped = np.array(TRUTH.TransformPoint(centroid_mm(fixed_labels, PATELLA).tolist()))
    error = np.linalg.norm(mapped - centroid_mm(moving_labels, PATELLA))
    assert error < 0.25 * min(mspacing), f"{name}: patella centroid off by {error:.3f} mm"
    # SimpleITK's resampling uses the same convention: moving through TRUTH lands on fixed.
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving_labels, fixed, TRUTH, sitk.sitkNearestNeighbor))
    inside = overlap_mask(fixed, moving, TRUTH)
    agreement = (resampled == sitk.GetArrayFromImage(fixed_labels))[inside].mean()
    assert inside.mean() > 0.3 and agreement > 0.93, (inside.mean(), agreement)


def test_pair_truth_runs_fixed_to_moving_on_flipped_oblique_grids():
    pair = make_registration_pair(
        "mri-microct", (12.0, 9.0), noise=False,
        fixed_grid=GridSpec((100, 100, 40), (1.0, 1.0, 2.5), tuple(np.diag([-1.0, 1.0, 1.0]).ravel())),
        moving_grid=GridSpec((80, 80, 80), (0.5, 0.5, 0.5), tuple(rotation_matrix((1, 2, 3), 20).ravel()),
                             center=(0.0, 8.0, 0.0)))
    assert pair.fixed.GetPixelID() == sitk.sitkUInt16 and pair.moving.GetPixelID() == sitk.sitkInt16
    matrix = transform_to_matrix(pair.true_transform)
    rotation = math.degrees(math.acos((np.trace(matrix[:3, :3]) - 1) / 2))
    assert rotation == pytest.approx(12.0, abs=1e-6)
    expected_ct = pair.fixed_phantom.render_like(pair.fixed, "ct", noise=False)
    inside = overlap_mask(pair.fixed, pair.moving, pair.true_transform)

    def correlation(transform):
        resampled = sitk.GetArrayFromImage(sitk.Resample(pair.moving, pair.fixed, transform, sitk.sitkLinear))
        return np.corrcoef(resampled[inside].astype(float), sitk.GetArrayFromImage(expected_ct)[inside])[0, 1]

    # Measured 0.97 (interpolation vs partial volume at the edges) and about 0 for the inverse.
    assert correlation(pair.true_transform) > 0.9
    assert correlation(pair.true_transform.GetInverse()) < 0.5
    points = pair.target_points(spacing_mm=3.0)
    assert len(points) > 200
    assert np.all(pair.fixed_phantom.label_at(points) != LABELS["background"])


def test_flexion_moves_only_the_shank():
    straight, bent = KneePhantom(), KneePhantom(flexion_deg=25.0)
    rng = np.random.default_rng(0)
    points = rng.uniform((-50, -40, -80), (50, 50, 60), size=(40000, 3))
    before = straight.label_at(points)
    flex = transform_to_matrix(bent.flexion_transform())
    after = bent.label_at(apply_matrix(flex, points))
    shank = np.isin(before, list(BONES["tibia"]) + list(BONES["fibula"]))
    assert shank.sum() > 1000 and np.array_equal(before[shank], after[shank])
    femur = np.isin(before, list(BONES["femur"]) + PATELLA)
    assert np.array_equal(bent.label_at(points[femur]), before[femur])
    pair = make_registration_pair("ct-mri", (5.0, 4.0), noise=False, moving_flexion_deg=20.0,
                                  fixed_grid=GridSpec((40, 40, 40), (2.0, 2.0, 2.0)),
                                  moving_grid=GridSpec((40, 40, 20), (2.0, 2.0, 4.0)))
    tibia_point = np.array([[0.0, 12.0, -60.0]])
    shift = (apply_matrix(transform_to_matrix(pair.bone_transforms["tibia"]), tibia_point)
             - apply_matrix(transform_to_matrix(pair.bone_transforms["femur"]), tibia_point))
    # 20 degrees about the knee axis (x through (0, 10, 10)): a chord of 2 r sin(10 deg).
    radius = math.hypot(12.0 - 10.0, -60.0 - 10.0)
    assert np.linalg.norm(shift) == pytest.approx(2 * radius * math.sin(math.radians(10.0)), rel=1e-6)


def test_bad_requests_raise_input_error(phantom):
    grid = build_grid((8, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(InputError):
        phantom.render_like(grid, "pet")
    with pytest.raises(InputError):
        bspline = sitk.BSplineTransformInitializer(grid, [2, 2, 2])
        bspline.SetParameters(np.random.default_rng(1).normal(0, 2, len(bspline.GetParameters())).tolist())
        phantom.render_like(grid, "ct", bspline)
    with pytest.raises(InputError):
        make_registration_pair("pet-mri")
