"""Image summaries and pair inspection: numbers right, notes in plain sentences, never a crash."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.steps.inspection import format_summary, inspect_pair, summarize_image


def make_image(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_summary_numbers_match_numpy_on_a_large_image():
    rng = np.random.default_rng(0)
    array = rng.gamma(2.0, 100.0, size=(160, 200, 220)).astype(np.float32)  # 7 M voxels
    array[5, 7, 9] = -50.0  # a minimum the subsample must not be trusted to find ...
    image = make_image(array, (0.5, 0.6, 2.0), origin=(10.0, -20.0, 5.0))
    start = time.perf_counter()
    summary = summarize_image(image, "fixed")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert summary.size == (220, 200, 160) and summary.voxel_count == 220 * 200 * 160
    assert summary.voxel_volume_mm3 == pytest.approx(0.6)
    assert summary.fov_volume_mm3 == pytest.approx(0.6 * 220 * 200 * 160)
    np.testing.assert_allclose(summary.extent.lower, [10.0 - 0.25, -20.0 - 0.3, 5.0 - 1.0])
    np.testing.assert_allclose(summary.extent.upper, [10.0 + 219.5 * 0.5, -20.0 + 199.5 * 0.6,
                                                      5.0 + 159.5 * 2.0], atol=1e-6)
    p1, p99 = np.percentile(array, [1, 99])
    assert summary.intensity_p1 == pytest.approx(p1, rel=0.05)
    assert summary.intensity_p99 == pytest.approx(p99, rel=0.02)
    assert summary.intensity_max <= array.max() and summary.intensity_max > p99
    assert summary.pixel_type == "32-bit float"
    assert any("4.0x longer along one axis" in w for w in summary.warnings)
    json.dumps(summary.to_dict(), allow_nan=False)
    text = format_summary(summary)
    assert "220 x 200 x 160 voxels of 0.5 x 0.6 x 2 mm" in text and "99th percentile" in text


def test_constant_nan_and_hidden_object_images_are_reported_not_crashed():
    constant = make_image(np.full((20, 30, 40), 7, np.int16), (1.0, 1.0, 1.0))
    summary = summarize_image(constant, "moving")
    assert summary.intensity_min == summary.intensity_max == 7
    assert any("looks constant" in w for w in summary.warnings)

    nan_image = make_image(np.full((20, 20, 20), np.nan, np.float32), (1.0, 1.0, 1.0))
    summary = summarize_image(nan_image, "fixed")
    assert any("no finite voxel values" in w for w in summary.warnings)
    assert "nan" in summary.format_summary()

    partly = np.ones((20, 20, 20), np.float32)
    partly[:, :, :2] = np.nan
    partly[10:, :, :] = 5.0
    summary = summarize_image(make_image(partly, (1.0, 1.0, 1.0)), "fixed")
    assert any("NaN or infinite voxels (about 5%" in w for w in summary.warnings)
    assert (summary.intensity_min, summary.intensity_max) == (1.0, 5.0)

    hidden = np.zeros((200, 200, 200), np.uint8)
    hidden[101, 101, 101] = 200  # missed by the strided sample, found by the exact check
    summary = summarize_image(make_image(hidden, (1.0, 1.0, 1.0)), "fixed")
    assert summary.intensity_max == 200 and not any("looks constant" in w for w in summary.warnings)

    pair = inspect_pair(nan_image, constant)  # must not raise
    assert len(pair.fixed.warnings + pair.moving.warnings + pair.warnings) >= 2


def test_pair_notes_for_fine_small_fixed_and_coarse_large_moving():
    fixed = make_image(np.random.default_rng(1).normal(size=(100, 100, 100)).astype(np.float32),
                       (0.25, 0.25, 0.25), origin=(0.0, 0.0, 0.0))
    moving = make_image(np.ones((40, 40, 40), np.int16), (1.0, 1.0, 1.0), origin=(-10.0, -10.0, -10.0))
    pair = inspect_pair(fixed, moving)
    assert pair.voxel_volume_ratio == pytest.approx(64.0)
    assert pair.spacing_ratio == pytest.approx(4.0)
    assert pair.fov_volume_ratio == pytest.approx(64000 / 15625)
    assert pair.fixed_in_moving == 1.0 and 0.0 < pair.moving_in_fixed < 0.5
    notes = " | ".join(pair.warnings)
    assert "fixed voxels are 64x smaller than moving's: it will be downsampled" in notes
    assert "fixed's field of view is 24% of moving's; moving will be cropped to the fixed ROI" in notes
    assert "do not overlap" not in notes
    data = pair.to_dict()
    assert data["start_overlap"]["fixed_fov_inside_moving"] == 1.0
    json.dumps(data, allow_nan=False)


def test_pair_notes_when_images_start_apart_and_an_initial_transform_brings_them_together():
    fixed = make_image(np.ones((30, 30, 30), np.int16), (1.0, 1.0, 1.0))
    moving = make_image(np.ones((10, 10, 10), np.int16), (0.5, 0.5, 0.5), origin=(500.0, 0.0, 0.0))
    apart = inspect_pair(fixed, moving)
    assert apart.fixed_in_moving == 0.0 and apart.moving_in_fixed == 0.0
    assert any("do not overlap at the start (identity); the initial search will look for the moving image"
               in w for w in apart.warnings)
    assert any("moving voxels are 8.0x smaller than fixed's" in w for w in apart.warnings)
    assert any("moving's field of view is 0.46% of fixed's; fixed will be cropped to the moving ROI" in w
               for w in apart.warnings)
    assert any("initialisation 'Off' may not find it" in w
               for w in inspect_pair(fixed, moving, initialize_mode="Off").warnings)
    # fixed -> moving: fixed point (5, 5, 5) lands on moving's grid
    shift = sitk.TranslationTransform(3, (495.0, -3.0, -3.0))
    together = inspect_pair(fixed, moving, shift)
    assert together.moving_in_fixed == 1.0
    assert not any("do not overlap" in w for w in together.warnings)
    assert "given initial transform" in together.format_summary()
