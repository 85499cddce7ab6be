"""The rigid stage's rotation restarts: where they start, and that a run uses them.

Why they exist: on the porcine micro-CT cube the rigid stage stopped 3.5 deg off in a shallower
Mattes MI optimum; restarts turned 4 deg about each axis reached the deeper one (see
test_real_data_accuracy for the measured effect).
"""

from __future__ import annotations

import numpy as np
import pytest
from MultimodalKneeRegistrationLib.engines.simpleitk_engine import _rotation_restarts
from MultimodalKneeRegistrationLib.geometry import point_distances, rotation_angle_deg, transform_to_matrix
from MultimodalKneeRegistrationLib.pipeline import register
from MultimodalKneeRegistrationLib.settings import settings_for_preset
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair
from MultimodalKneeRegistrationLib.synthetic.phantom import rigid_transform


def test_six_restarts_turned_about_each_axis_through_the_centre():
    center = (12.0, -30.0, 7.0)
    pose = rigid_transform((0.2, 0.9, -0.4), 33.0, (4.0, -2.0, 9.0), center)
    restarts = _rotation_restarts("Rigid", pose, settings_for_preset("mri-ct", rotation_restarts_deg=4.0).optimizer)
    assert len(restarts) == 6
    matrix = transform_to_matrix(pose)
    axes = []
    for restart in restarts:
        relative = np.linalg.inv(matrix) @ transform_to_matrix(restart)
        assert rotation_angle_deg(relative) == pytest.approx(4.0, abs=1e-6)
        # The turn is about the pose's own centre: the centre maps where the pose maps it.
        assert np.allclose(restart.TransformPoint(center), pose.TransformPoint(center), atol=1e-9)
        w, v = np.linalg.eig(relative[:3, :3])
        axes.append(np.round(np.abs(np.real(v[:, np.argmin(np.abs(w - 1))])), 6))
    # Two turns (one each way) about each of x, y and z.
    assert sorted(map(tuple, axes)) == sorted([(1.0, 0.0, 0.0)] * 2 + [(0.0, 1.0, 0.0)] * 2 + [(0.0, 0.0, 1.0)] * 2)


def test_no_restarts_when_off_or_for_affine_stages():
    pose = rigid_transform((0.0, 0.0, 1.0), 10.0, (1.0, 2.0, 3.0))
    assert _rotation_restarts("Rigid", pose, settings_for_preset("mri-ct").optimizer) == []
    assert _rotation_restarts("Affine", pose, settings_for_preset("mri-ct", rotation_restarts_deg=4.0).optimizer) == []
    assert settings_for_preset("mri-microct-knee").optimizer.rotation_restarts_deg == 0.0  # off since issue 18


def test_a_registration_with_restarts_reports_them_and_stays_accurate():
    fine = GridSpec((80, 80, 80), (0.4, 0.4, 0.4), center=(0.0, 8.0, 0.0))
    mri = GridSpec((120, 120, 30), (1.0, 1.0, 3.0), center=(0.0, 5.0, 10.0))
    pair = make_registration_pair("microct-mri", (8.0, 6.0), fixed_grid=fine, moving_grid=mri)
    settings = settings_for_preset("mri-microct-knee", rotation_restarts_deg=6.0)
    result = register(pair.fixed, pair.moving, settings)
    rigid = [stage for stage in result.stages if stage.name == "Rigid"][0]
    assert "6 restarts turned 6 deg" in rigid.stop_condition
    errors = point_distances(result.transform, pair.true_transform, pair.target_points())
    assert errors.mean() <= 1.0, f"mean {errors.mean():.2f} mm"


def test_the_setting_is_validated():
    from MultimodalKneeRegistrationLib.errors import InputError

    with pytest.raises(InputError, match="rotation_restarts_deg"):
        settings_for_preset("mri-ct", rotation_restarts_deg=-1.0)
