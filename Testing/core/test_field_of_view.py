"""The reconstruction cylinder (issue 18): found on micro-CT-like images along any grid axis, masked
on any grid, its padding filled, and left alone where there is none (a clinical-CT-like cube, a round
body in air)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.steps.field_of_view import find_cylinder, with_padding_filled

rng = np.random.default_rng(3)


def reconstruction(size=(60, 64, 64), spacing=(0.2, 0.2, 0.3), axis: int = 2, padding: float = 0.0,
                   center_offset=(0.0, 0.0), radius_share: float = 1.0) -> sitk.Image:
    """A noisy textured volume (index sizes i, j, k) reconstructed inside a circle about index ``axis``
    and stored as ``padding`` outside it."""
    array = (100.0 + 20.0 * rng.standard_normal(size[::-1])).astype(np.float32)  # (k, j, i)
    planes = np.moveaxis(array, 2 - axis, 0)
    shape = planes.shape[1:]
    in_plane = [d for d in range(3) if d != axis]
    step = (spacing[in_plane[1]], spacing[in_plane[0]])
    a, b = np.ogrid[:shape[0], :shape[1]]
    da = (a - (shape[0] - 1) / 2.0 - center_offset[0]) * step[0]
    db = (b - (shape[1] - 1) / 2.0 - center_offset[1]) * step[1]
    radius = radius_share * min(shape[0] * step[0], shape[1] * step[1]) / 2.0
    planes[:, np.hypot(da, db) > radius] = padding
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((3.0, -7.0, 11.0))
    image.SetDirection([0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # turned: index space must not care
    return image


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_cylinder_is_found_along_its_axis_with_its_radius(axis):
    image = reconstruction(axis=axis, padding=-1024.0)
    cylinder = find_cylinder(image)
    assert cylinder is not None and cylinder.padding == -1024.0
    direction = np.array(image.GetDirection()).reshape(3, 3)
    assert np.allclose(cylinder.axis, direction[:, axis])
    expected = min(image.GetSize()[d] * image.GetSpacing()[d] for d in range(3) if d != axis) / 2.0
    assert cylinder.radius_mm == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_mask_holds_the_inside_only_on_any_grid(axis):
    image = reconstruction(axis=axis)
    cylinder = find_cylinder(image)
    values = sitk.GetArrayViewFromImage(image)
    mask = sitk.GetArrayFromImage(cylinder.mask_on(image, margin_mm=max(image.GetSpacing())))
    assert values[mask > 0].min() > 0.0  # no padding voxel a voxel inside the rim
    assert (values[mask == 0] > 0.0).mean() < 0.3  # the tissue left out is the one-voxel ring only
    # On a coarser grid along other axes (a search image), a margin moves the rim inwards.
    coarse = sitk.Resample(image, [12, 12, 12], sitk.Euler3DTransform((0, 0, 0), 0.3, 0.2, 0.1),
                           sitk.sitkNearestNeighbor, image.GetOrigin(), [1.0] * 3, image.GetDirection())
    near = sitk.GetArrayFromImage(cylinder.mask_on(coarse, 0.0)).sum()
    assert 0 < sitk.GetArrayFromImage(cylinder.mask_on(coarse, 1.5)).sum() < near


def test_filled_padding_takes_the_inside_median_and_leaves_the_inside_alone():
    image = reconstruction(padding=0.0)
    cylinder = find_cylinder(image)
    filled_image = with_padding_filled(image, cylinder)  # kept: a view must not outlive its image
    filled = sitk.GetArrayViewFromImage(filled_image)
    original = sitk.GetArrayViewFromImage(image)
    inside = cylinder.distance_mm(image) <= cylinder.radius_mm
    assert np.array_equal(filled[inside], original[inside])
    assert filled.min() > 0.0 and np.allclose(filled[~inside], np.median(original[inside]), rtol=0.05)


def test_an_off_centre_circle_has_an_off_centre_axis():
    image = reconstruction(size=(80, 64, 40), spacing=(0.2, 0.2, 0.3), center_offset=(0.0, 6.0), radius_share=0.9)
    cylinder = find_cylinder(image)
    assert cylinder is not None
    expected = image.TransformContinuousIndexToPhysicalPoint(((80 - 1) / 2.0 + 6.0, (64 - 1) / 2.0, 19.5))
    assert np.allclose(cylinder.center, expected, atol=0.1)


@pytest.mark.parametrize("case", ["no padding", "air with noise", "round body in a larger slice"])
def test_images_without_a_reconstruction_cylinder_are_left_whole(case):
    if case == "no padding":
        image = reconstruction(radius_share=2.0)
    elif case == "air with noise":  # a clinical-CT-like cube: air outside the body is noisy, not constant
        image = reconstruction(padding=0.0)
        array = sitk.GetArrayFromImage(image)
        array[array == 0.0] = rng.normal(-1000.0, 20.0, int((array == 0.0).sum()))
        noisy = sitk.GetImageFromArray(array)
        noisy.CopyInformation(image)
        image = noisy
    else:  # a round limb in exact-zero air, filling half the slice: not a reconstruction circle
        image = reconstruction(radius_share=0.5)
    assert find_cylinder(image) is None


def test_preparation_masks_the_small_image_when_asked_and_says_so():
    """``register``'s preparation: the small image's cylinder is found when asked (the micro-CT preset,
    while ``MASK_RECONSTRUCTION_CYLINDER`` is on) and its padding filled; the large image is never
    touched."""
    from MultimodalKneeRegistrationLib.pipeline import prepare_working_images
    from MultimodalKneeRegistrationLib.progress import Progress
    from MultimodalKneeRegistrationLib.settings import settings_for_preset
    from MultimodalKneeRegistrationLib.steps.planning import plan_registration

    fine = reconstruction(size=(64, 64, 48), spacing=(0.25, 0.25, 0.25))
    coarse = sitk.Resample(fine, [40, 40, 30], sitk.Transform(), sitk.sitkLinear,
                           fine.TransformContinuousIndexToPhysicalPoint([-48.0] * 3), [1.0] * 3,
                           fine.GetDirection(), 100.0, sitk.sitkFloat32)
    plan = plan_registration(coarse, fine, settings_for_preset("mri-microct-knee"))
    assert plan.small_fov_image == "moving"
    whole = prepare_working_images(coarse, fine, plan, Progress())
    masked = prepare_working_images(coarse, fine, plan, Progress(), find_reconstruction=True)
    assert whole.mask is None and whole.notes == ()
    assert masked.mask is not None and masked.notes[0].startswith("The moving image is a reconstruction")
    assert sitk.GetArrayViewFromImage(masked.sampled).min() > sitk.GetArrayViewFromImage(whole.sampled).min()
    assert np.array_equal(sitk.GetArrayViewFromImage(masked.other), sitk.GetArrayViewFromImage(whole.other))


def test_register_masks_a_micro_ct_reconstruction_by_default():
    """The micro-CT preset looks for the cylinder in a real run and says so in the run's notes; the CT
    preset leaves the same images alone."""
    from MultimodalKneeRegistrationLib.pipeline import MASK_RECONSTRUCTION_CYLINDER, register
    from MultimodalKneeRegistrationLib.settings import settings_for_preset

    assert MASK_RECONSTRUCTION_CYLINDER
    fine = reconstruction(size=(64, 64, 48), spacing=(0.25, 0.25, 0.25))
    coarse = sitk.Resample(fine, [40, 40, 30], sitk.Transform(), sitk.sitkLinear,
                           fine.TransformContinuousIndexToPhysicalPoint([-48.0] * 3), [1.0] * 3,
                           fine.GetDirection(), 100.0, sitk.sitkFloat32)
    notes = {}
    for preset in ("mri-microct-knee", "mri-ct"):
        settings = settings_for_preset(preset, initialize_transform_mode="Off", fail_on_sanity_check=False)
        notes[preset] = " ".join(register(coarse, fine, settings).facts.notes)
    assert "The moving image is a reconstruction" in notes["mri-microct-knee"]
    assert "reconstruction" not in notes["mri-ct"]
