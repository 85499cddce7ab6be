"""The coarse-to-fine search over rotations: measured coverage, levels that reach each other, and
threads that change nothing.

The covering radii are measured here on random rotations, independently of ``rotations``' own
probes, so a grid that leaves a gap fails whatever the module claims.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import rotation_angle_deg, rotation_matrix, transform_to_matrix
from MultimodalKneeRegistrationLib.search.edge_correlation import (
    _padded_rfftn,
    _spectrum,
    _valid_irfftn,
    correlation_spacing,
    whole_field_spacing,
)
from MultimodalKneeRegistrationLib.search.pose_levels import search_levels
from MultimodalKneeRegistrationLib.search.rotations import covering_radius_deg, local_covering_deg, local_grid
from MultimodalKneeRegistrationLib.settings import SearchSettings
from MultimodalKneeRegistrationLib.synthetic.phantom import KneePhantom, rigid_transform

CROP_CENTER = (8.0, 12.0, 4.0)


def _nearest_deg(rotation: np.ndarray, grid) -> float:
    return min(rotation_angle_deg(rotation.T @ tried) for tried in grid)


@pytest.mark.parametrize("step_deg", [17.0, 8.0, 4.0])
def test_a_local_grid_covers_its_reach_within_its_stated_radius(step_deg):
    rng = np.random.default_rng(7)
    grid = local_grid(step_deg)
    worst = 0.0
    for _ in range(400):
        axis = rng.normal(size=3)
        angle = np.radians(2.0 * step_deg) * rng.random() ** (1.0 / 3.0)
        worst = max(worst, _nearest_deg(rotation_matrix(axis / np.linalg.norm(axis) * angle), grid))
    stated = local_covering_deg(step_deg)
    assert worst <= stated + 0.05, f"a rotation {worst:.2f} deg from the grid; stated {stated:.2f}"
    assert stated < step_deg, "the covering radius should be below the step (a cubic grid's is ~0.87 x step)"


def test_each_level_reaches_the_last_levels_covering_radius():
    search = SearchSettings()
    reach = [2.0 * step for step in search.level_steps_deg]
    assert reach[0] >= covering_radius_deg(search) - 0.5
    for before, after in zip(search.level_steps_deg, reach[1:]):
        assert after >= local_covering_deg(before) - 0.5
    assert local_covering_deg(search.level_steps_deg[-1]) <= 4.0


def test_the_pruned_template_transform_equals_the_full_one():
    template = np.random.default_rng(1).normal(size=(9, 9, 9)).astype(np.float32)
    shape = [30, 27, 25]
    full = _spectrum(template, shape)
    assert full.shape == (16, 27, 25), "the half spectrum lies along z"
    assert np.allclose(_padded_rfftn(template, shape), full, atol=1e-3 * np.abs(full).max())


def test_the_cut_inverse_equals_the_full_inverse_cut():
    """A correlation computed through ``_spectrum`` and ``_valid_irfftn`` equals numpy's own, shift by
    shift, over the valid shifts only."""
    rng = np.random.default_rng(2)
    shape, valid = [30, 27, 25], [22, 19, 17]
    large = rng.normal(size=shape).astype(np.float32)
    template = rng.normal(size=(9, 9, 9)).astype(np.float32)
    product = _spectrum(large, shape) * np.conj(_padded_rfftn(template, shape))
    cut = _valid_irfftn(product, shape, valid)
    direct = np.array([[[np.sum(large[z:z + 9, y:y + 9, x:x + 9] * template) for x in range(valid[2])]
                        for y in range(valid[1])] for z in range(valid[0])])
    assert cut.shape == tuple(valid)
    assert np.allclose(cut, direct, atol=1e-4 * np.abs(direct).max())


@pytest.fixture(scope="module")
def oblique_mri():
    """A large MRI-like phantom on a grid turned 30 deg: the correlation works along its own axes."""
    turned = rotation_matrix(np.radians(30.0) * np.array([0.0, 0.6, 0.8]))
    return KneePhantom(seed=3).render("mri", (150, 150, 50), (1.0, 1.0, 2.5), direction=turned.ravel(),
                                      center=(0.0, 5.0, 10.0))


def _crop(truth: sitk.Transform) -> sitk.Image:
    return KneePhantom(seed=4).render("ct", (80, 80, 80), (0.4, 0.4, 0.4), center=CROP_CENTER, transform=truth)


@pytest.mark.parametrize("level_one_coarser", [None, 1.5])
def test_a_crop_turned_60_deg_is_found_from_rotations_30_deg_away_in_an_oblique_mri(oblique_mri, level_one_coarser):
    """Level 1 is given only rotations 30 deg from the truth; the levels must close the gap. With
    ``level_one_coarser``, level 1 correlates the whole field on a grid that much coarser (1.5x: a
    third of the voxels, each FFT a third of the cost) and the finer levels still end on the answer."""
    truth = rigid_transform((0.3, -0.5, 0.8), 60.0, (0.0, 0.0, 0.0), CROP_CENTER)
    true_matrix = transform_to_matrix(truth)
    crop = _crop(truth)
    spacing = correlation_spacing(crop, oblique_mri, 1.0)
    whole = None if level_one_coarser is None else level_one_coarser * spacing
    axes = [(1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)]
    rotations = [true_matrix[:3, :3] @ rotation_matrix(np.radians(30.0) * np.array(a) / np.linalg.norm(a))
                 for a in axes]
    outcome = search_levels(crop, oblique_mri, rotations, spacing, SearchSettings(final_candidates=2), 34.0,
                            whole_field_spacing_mm=whole)
    best = outcome.candidates[0]
    middle = np.array([*CROP_CENTER, 1.0])
    miss_mm = np.linalg.norm((best.matrix @ middle - true_matrix @ middle)[:3])
    assert rotation_angle_deg(true_matrix[:3, :3].T @ best.matrix[:3, :3]) <= 5.0
    assert miss_mm <= 2.0 * spacing
    assert outcome.levels[0].rotations_scored == 3
    assert outcome.levels[0].spacing_mm == pytest.approx(whole or spacing, rel=0.01)
    assert all(level.spacing_mm == pytest.approx(spacing) for level in outcome.levels[1:])
    assert all(level.rotations_scored == 33 * level.poses_in for level in outcome.levels[1:])
    assert len(outcome.levels) == 1 + len(SearchSettings().level_steps_deg)


def test_the_whole_field_grid_is_capped_in_voxels():
    """A small image in a large field: the first level's grid stops at ``WHOLE_FIELD_MAX_VOXELS``."""
    small = sitk.Image([20, 20, 20], sitk.sitkFloat32)
    small.SetSpacing([1.0] * 3)
    large = sitk.Image([300, 300, 200], sitk.sitkFloat32)
    large.SetSpacing([1.0] * 3)
    spacing = whole_field_spacing(small, large, 0.5)
    assert (300 * 300 * 200) / spacing**3 == pytest.approx(1_500_000, rel=1e-6)
    assert spacing > correlation_spacing(small, large, 0.5)
    # A large small image sets its own, coarser spacing (20 voxels across): no cap needed.
    big = sitk.Image([100, 100, 100], sitk.sitkFloat32)
    big.SetSpacing([1.0] * 3)
    assert whole_field_spacing(big, large, 0.5) == correlation_spacing(big, large, 0.5) == pytest.approx(5.0)


def test_threads_give_the_same_candidates_as_one(oblique_mri):
    truth = rigid_transform((0.0, 0.0, 1.0), 20.0, (0.0, 0.0, 0.0), CROP_CENTER)
    crop = _crop(truth)
    spacing = correlation_spacing(crop, oblique_mri, 1.0)
    rotations = [rotation_matrix(np.radians(a) * np.array([0.0, 0.0, 1.0])) for a in (0.0, 40.0, 80.0, 120.0)]
    settings = SearchSettings(level_steps_deg=(10.0,), level_keep=(3,), final_candidates=3)
    score = _center_distance_score(crop)
    one = search_levels(crop, oblique_mri, rotations, spacing, settings, 34.0, score=score, workers=1)
    two = search_levels(crop, oblique_mri, rotations, spacing, settings, 34.0, score=score, workers=2)
    assert len(one.candidates) == len(two.candidates) >= 1
    for a, b in zip(one.candidates, two.candidates):
        assert np.array_equal(a.matrix, b.matrix) and a.ncc == b.ncc and a.score == b.score


def _center_distance_score(crop: sitk.Image):
    """A stand-in MI: higher the nearer the crop's centre lands to where it belongs (deterministic)."""
    middle = np.array([*CROP_CENTER, 1.0])
    return lambda matrix: -float(np.linalg.norm((matrix @ middle)[:3] - middle[:3]))


def test_the_polished_poses_are_what_the_next_level_turns(oblique_mri):
    """The first refinement level's poses go through ``polish`` and the next level keeps the best
    polished ones: a score that prefers poses far from the answer (a look-alike's lead before
    polishing) no longer decides, and the polished pose, not the unpolished one, is refined on."""
    truth = rigid_transform((0.3, -0.5, 0.8), 40.0, (0.0, 0.0, 0.0), CROP_CENTER)
    true_matrix = transform_to_matrix(truth)
    crop = _crop(truth)
    spacing = correlation_spacing(crop, oblique_mri, 1.0)
    rotations = [true_matrix[:3, :3] @ rotation_matrix(np.radians(25.0) * np.array(a) / np.linalg.norm(a))
                 for a in [(1.0, 0.0, 0.0), (0.0, 1.0, 1.0)]]
    near = _center_distance_score(crop)
    polished_inputs = []

    def polish(matrix):
        polished_inputs.append(matrix)
        return true_matrix.copy(), near(true_matrix) if near(matrix) > -15.0 else near(matrix)

    outcome = search_levels(crop, oblique_mri, rotations, spacing, SearchSettings(final_candidates=2), 34.0,
                            score=lambda matrix: -near(matrix), polish=polish)
    level_two = outcome.levels[1]
    assert level_two.polished == len(polished_inputs) == 2 * level_two.poses_in  # best by NCC and by score each
    assert "polished on MI" in level_two.sentence() and outcome.levels[2].polished == 0
    best = outcome.candidates[0]  # the last levels turn the polished pose by 8 and 4 deg and keep the NCC's best
    assert rotation_angle_deg(true_matrix[:3, :3].T @ best.matrix[:3, :3]) <= SearchSettings().level_steps_deg[-1] + 0.5
    middle = np.array([*CROP_CENTER, 1.0])
    assert np.linalg.norm((best.matrix @ middle - true_matrix @ middle)[:3]) <= 2.0 * spacing


def test_the_polish_setting_reaches_the_search_and_the_plan_says_so():
    """``search_polish_evaluations`` is off by default (the plan does not mention it); set, the
    search polishes the first refinement level and says so in its stage and in the plan."""
    from MultimodalKneeRegistrationLib.pipeline import register
    from MultimodalKneeRegistrationLib.settings import settings_for_preset
    from MultimodalKneeRegistrationLib.steps.plan_resolution import plan_for
    from MultimodalKneeRegistrationLib.synthetic.pairs import make_registration_pair

    pair = make_registration_pair("microct-mri", (25.0, 12.0))
    default = plan_for(pair.fixed, pair.moving, settings_for_preset("mri-microct-knee"))[1]
    assert default.search.polish_evaluations == 0 and not any("polished" in s for s in default.explanation)
    settings = settings_for_preset("mri-microct-knee", search_polish_evaluations=30)
    result = register(pair.fixed, pair.moving, settings)
    assert any("each polished by 30 evaluations" in s for s in result.plan.explanation)
    search = result.stages[0]
    assert search.name == "Initialize (search)" and "poses polished on MI" in search.stop_condition
    assert result.verdict.passed
