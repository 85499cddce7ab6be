"""The ``auto`` preset (the default): the images decide between mri-ct and mri-microct-knee."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.run import run
from MultimodalKneeRegistrationLib.settings import PRESETS, settings_for_preset
from MultimodalKneeRegistrationLib.steps.auto_preset import classify_pair, in_hounsfield_units, resolve_preset
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair


@pytest.mark.parametrize("kind, expected", [
    ("microct-mri", "mri-microct-knee"), ("mri-microct", "mri-microct-knee"),
    ("ct-mri", "mri-ct"), ("mri-ct", "mri-ct"),
])
def test_phantom_pairs_are_classified(kind, expected):
    pair = make_registration_pair(kind, (5.0, 4.0))
    choice, reasons = classify_pair(pair.fixed, pair.moving)
    assert choice == expected, reasons
    assert "finer per axis" in reasons


def test_real_pair_and_a_micro_ct_cube_of_it(porcine_dir):
    ct = sitk.ReadImage(str(porcine_dir / "CT.nrrd"))
    mr = sitk.ReadImage(str(porcine_dir / "MR_T2.nrrd"))
    assert in_hounsfield_units(ct) and not in_hounsfield_units(mr)
    choice, reasons = classify_pair(ct, mr)
    assert choice == "mri-ct" and "the fixed image stores Hounsfield units" in reasons
    cube = sitk.Resample(ct, [150] * 3, sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(), [0.2] * 3,
                         ct.GetDirection(), -1000.0, sitk.sitkInt16)
    assert classify_pair(mr, cube)[0] == "mri-microct-knee"
    coarse_cube = sitk.Resample(ct, [130] * 3, sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(), [0.3] * 3,
                                ct.GetDirection(), -1000.0, sitk.sitkInt16)
    assert classify_pair(coarse_cube, mr)[0] == "mri-microct-knee"  # 0.3 mm: only 2.85x finer than the MR


def test_a_tiny_voxel_is_a_micro_ct_whatever_the_coverage():
    fine = sitk.Image([400, 400, 400], sitk.sitkUInt16)
    fine.SetSpacing([0.05] * 3)
    coarse = sitk.Image([40, 40, 40], sitk.sitkUInt16)
    coarse.SetSpacing([0.5] * 3)  # covers the same 20 mm: not "inside" it, but the voxels say micro-CT
    assert classify_pair(coarse, fine)[0] == "mri-microct-knee"


def test_knobs_set_on_auto_survive_the_choice_and_other_presets_pass_through():
    pair = make_registration_pair("microct-mri", (5.0, 4.0))
    tuned = settings_for_preset("auto", number_of_iterations=77, roi_margin_mm=3.0)
    resolved, why = resolve_preset(tuned, pair.fixed, pair.moving)
    assert resolved.preset == "mri-microct-knee" and why.startswith("Preset auto chose mri-microct-knee: ")
    assert resolved.optimizer.number_of_iterations == 77 and resolved.choices.roi_margin_mm == 3.0
    assert resolved.optimizer.rotation_restarts_deg == PRESETS["mri-microct-knee"].optimizer.rotation_restarts_deg
    explicit = settings_for_preset("mri-ct")
    assert resolve_preset(explicit, pair.fixed, pair.moving) == (explicit, None)


def test_auto_registers_as_the_preset_it_chose_and_says_so():
    pair = make_registration_pair("ct-mri", (8.0, 6.0), fixed_grid=GridSpec((70, 70, 70), (1.5, 1.5, 1.5)),
                                  moving_grid=GridSpec((100, 100, 24), (1.0, 1.0, 4.0)))
    auto = run(pair.fixed, pair.moving, settings_for_preset("auto"), qc_mode=None, resample=False)
    chosen = run(pair.fixed, pair.moving, settings_for_preset("mri-ct"), qc_mode=None, resample=False)
    assert np.array_equal(auto.result.transform.GetParameters(), chosen.result.transform.GetParameters())
    assert auto.result.settings.preset == "mri-ct"
    assert any(s.startswith("Preset auto chose mri-ct") for s in auto.report["plan"]["explanation"])
