"""The rigid stage's sample-set rounds stop once two agree (``simpleitk_engine.ROUNDS_AGREE_MM``).

Why: each round re-optimises on a fresh random sample set and a dense referee keeps the best
endpoint; when two sets end within a quarter millimetre of each other a third one only costs time
(a second on a 48 mm micro-CT cube).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from MultimodalKneeRegistrationLib.engines import simpleitk_engine
from MultimodalKneeRegistrationLib.geometry import corner_points, point_distances
from MultimodalKneeRegistrationLib.pipeline import register
from MultimodalKneeRegistrationLib.settings import OptimizerSettings, settings_for_preset
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair
from MultimodalKneeRegistrationLib.synthetic.phantom import rigid_transform


@pytest.fixture(scope="module")
def pair():
    fine = GridSpec((80, 80, 80), (0.4, 0.4, 0.4), center=(0.0, 8.0, 0.0))
    mri = GridSpec((120, 120, 30), (1.0, 1.0, 3.0), center=(0.0, 5.0, 10.0))
    return make_registration_pair("microct-mri", (8.0, 6.0), fixed_grid=fine, moving_grid=mri)


def test_the_rounds_compare_the_largest_displacement_of_the_points():
    points = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    turned = rigid_transform((0.0, 0.0, 1.0), 90.0, (0.0, 0.0, 0.0))  # (10,0,0) -> (0,10,0)
    still = rigid_transform((0.0, 0.0, 1.0), 0.0, (0.0, 0.0, 0.0))
    assert point_distances(still, turned, points).max() == pytest.approx(np.sqrt(200.0))


def _rigid(result):
    return [stage for stage in result.stages if stage.name == "Rigid"][0]


def test_rounds_stop_when_two_sample_sets_agree_and_run_on_when_they_do_not(pair, monkeypatch):
    start = rigid_transform((0.0, 0.0, 1.0), 3.0, (1.5, -1.0, 0.5), (0.0, 8.0, 0.0))
    # Half the voxels per set: two sets end ~0.1 mm apart. 5 %: 0.6-0.7 mm apart, all three run.
    dense, sparse = (settings_for_preset("mri-microct-knee", initialize_transform_mode="Off", sampling_percentage=p)
                     for p in (0.5, 0.05))
    agreed = register(pair.fixed, pair.moving, dense, initial_transform=start)
    assert "best of 2 sample sets by the dense metric (the last two within 0.25 mm)" in _rigid(agreed).stop_condition
    spread = register(pair.fixed, pair.moving, sparse, initial_transform=start)
    assert "best of 3 sample sets by the dense metric; last round" in _rigid(spread).stop_condition
    monkeypatch.setattr(simpleitk_engine, "ROUNDS_AGREE_MM", 0.0)  # no two rounds can agree
    every = register(pair.fixed, pair.moving, dense, initial_transform=start)
    assert "best of 3 sample sets by the dense metric; last round" in _rigid(every).stop_condition
    points = pair.target_points()
    for result in (agreed, spread, every):
        assert point_distances(result.transform, pair.true_transform, points).mean() <= 1.0
    # What the skipped third round would have changed: less than the sample sets' own spread.
    assert point_distances(agreed.transform, every.transform, corner_points(pair.fixed)).max() <= 0.25


@dataclass(frozen=True)
class _Plan:
    optimizer: OptimizerSettings


@pytest.mark.parametrize("first, later", [(1e-6, 1e-4), (1e-4, 1e-4), (1e-3, 1e-3)])
def test_later_rounds_stop_at_the_looser_value_tolerance(first, later):
    plan = _Plan(OptimizerSettings(powell_value_tolerance=first, powell_round_value_tolerance=1e-4))
    assert simpleitk_engine._later_round(plan).optimizer.powell_value_tolerance == later
    assert plan.optimizer.powell_value_tolerance == first  # the first round's plan is left as it was


def test_a_later_round_reports_its_own_value_tolerance(pair):
    start = rigid_transform((0.0, 0.0, 1.0), 3.0, (1.5, -1.0, 0.5), (0.0, 8.0, 0.0))
    settings = settings_for_preset("mri-ct", initialize_transform_mode="Off", sampling_percentage=0.05)
    assert settings.optimizer.powell_value_tolerance == 1e-6
    result = register(pair.fixed, pair.moving, settings, initial_transform=start)
    last_round = _rigid(result).stop_condition.split("last round: ")[-1]
    assert "Value Tolerance (0.0001)" in last_round, last_round
