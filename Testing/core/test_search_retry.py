"""A refused search runs once more over denser rotations (``pipeline._search_more_densely``), and its
result is kept only if it passes the verdict.

A micro-CT-like phantom cube turned 90 deg inside an MRI-like volume. With no fill rotations the
first search explores only 60 deg around the identity and the three half turns, misses the answer
and is refused; the retry's rotations over every orientation find it.
"""

from __future__ import annotations

import pytest
from MultimodalKneeRegistrationLib.errors import InputError, RegistrationFailedError
from MultimodalKneeRegistrationLib.geometry import point_distances
from MultimodalKneeRegistrationLib.pipeline import register
from MultimodalKneeRegistrationLib.settings import SearchSettings, settings_for_preset
from MultimodalKneeRegistrationLib.steps.plan_resolution import plan_for
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair
from MultimodalKneeRegistrationLib.verdict.checks import rotation_limit_deg


@pytest.fixture(scope="module")
def turned_cube():
    fine = GridSpec((80, 80, 80), (0.4, 0.4, 0.4), center=(0.0, 8.0, 0.0))
    mri = GridSpec((120, 120, 30), (1.0, 1.0, 3.0), center=(0.0, 5.0, 10.0))
    return make_registration_pair("microct-mri", (90.0, 10.0), fixed_grid=fine, moving_grid=mri)


def _settings(retry: int):
    return settings_for_preset("mri-microct-knee", search_fill_rotations=0, search_retry_fill_rotations=retry)


def test_without_the_retry_the_first_search_is_refused(turned_cube):
    with pytest.raises(RegistrationFailedError, match="sanity checks"):
        register(turned_cube.fixed, turned_cube.moving, _settings(0))


def test_the_retry_finds_the_answer_and_says_so(turned_cube):
    result = register(turned_cube.fixed, turned_cube.moving, _settings(300))
    errors = point_distances(result.transform, turned_cube.true_transform, turned_cube.target_points())
    assert result.verdict.passed and errors.mean() < 0.5, f"mean {errors.mean():.2f} mm"
    assert "a second search over 449 rotations found a pose that passes them" in result.warnings[0]
    assert result.timings["rejected_search"] > 0
    assert result.plan.search.fill_rotations == 0  # the plan reported is the one asked for
    assert any("ran again over 449 rotations" in note for note in result.facts.notes)


def test_a_retry_that_is_refused_too_keeps_the_first_refusal_and_says_so(turned_cube):
    with pytest.raises(RegistrationFailedError) as refused:
        register(turned_cube.fixed, turned_cube.moving, _settings(1))
    result = refused.value.result
    assert "a second search over" in result.warnings[-1] and "was refused too" in result.warnings[-1]
    assert result.timings["second_search"] > 0


def test_the_plan_announces_the_retry_when_asked_for_and_not_by_default(turned_cube):
    retry = settings_for_preset("mri-microct-knee", search_retry_fill_rotations=1400)
    _, plan = plan_for(turned_cube.fixed, turned_cube.moving, retry)
    assert any("the search runs once more over 1232 rotations" in s for s in plan.explanation)
    _, plan = plan_for(turned_cube.fixed, turned_cube.moving, settings_for_preset("mri-microct-knee"))
    assert not any("runs once more" in s for s in plan.explanation)


def test_the_retry_setting_is_validated():
    with pytest.raises(InputError, match="search_retry_fill_rotations"):
        settings_for_preset("mri-microct-knee", search_retry_fill_rotations=-1)


def test_rotations_spread_over_every_orientation_need_no_rotation_limit():
    no_flips = SearchSettings(flips=False, fill_rotations=300)
    assert rotation_limit_deg("search", no_flips, None) is None
    near_only = SearchSettings(flips=False, orientations="near")
    assert rotation_limit_deg("search", near_only, None) == near_only.max_angle_deg + 30.0
