"""The ``auto`` preset (the default): the images decide between mri-ct and mri-microct-knee."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.run import run
from MultimodalKneeRegistrationLib.settings import PRESETS, settings_for_preset
from MultimodalKneeRegistrationLib.steps.auto_preset import classify_pair, in_hounsfield_units
from MultimodalKneeRegistrationLib.steps.plan_resolution import plan_for, resolve_plan
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair

PACKAGE_PARENT = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration"


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
    resolved, plan = resolve_plan(pair.fixed, pair.moving, "auto", {"number_of_iterations": 77, "roi_margin_mm": 3.0})
    assert resolved.preset == "mri-microct-knee"
    assert any(s.startswith("Preset auto chose mri-microct-knee: ") for s in plan.explanation)
    assert resolved.optimizer.number_of_iterations == 77 and resolved.choices.roi_margin_mm == 3.0
    assert resolved.optimizer.rotation_restarts_deg == PRESETS["mri-microct-knee"].optimizer.rotation_restarts_deg
    assert resolved.overrides == ("number_of_iterations", "roi_margin_mm") and plan.roi_margin_mm == 3.0
    explicit = settings_for_preset("mri-ct")
    assert plan_for(pair.fixed, pair.moving, explicit)[0] == explicit


def test_an_override_equal_to_autos_own_value_is_kept():
    """``--iterations 15`` is auto's own value: it used to vanish under the micro-CT preset's 40."""
    pair = make_registration_pair("microct-mri", (5.0, 4.0))
    settings, _ = plan_for(pair.fixed, pair.moving, settings_for_preset("auto", number_of_iterations=15))
    assert PRESETS["auto"].optimizer.number_of_iterations == 15
    assert (settings.preset, settings.optimizer.number_of_iterations) == ("mri-microct-knee", 15)
    untouched, _ = plan_for(pair.fixed, pair.moving, settings_for_preset("auto"))
    assert untouched == PRESETS["mri-microct-knee"]  # nothing set, nothing recorded: the preset's 40
    changed, _ = plan_for(pair.fixed, pair.moving, PRESETS["auto"].replace(roi_margin_mm=4.0))
    assert changed.choices.roi_margin_mm == 4.0  # a value changed with replace() is the user's too


def test_iterations_15_on_a_micro_ct_pair_runs_15_and_the_report_says_so(tmp_path):
    """A real command-line run on a phantom micro-CT pair (the affine stage counts its iterations)."""
    pair = make_registration_pair("microct-mri", (5.0, 4.0))
    sitk.WriteImage(pair.fixed, str(tmp_path / "microct.nrrd"))
    sitk.WriteImage(pair.moving, str(tmp_path / "mri.nrrd"))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", tmp_path / "microct.nrrd",
         tmp_path / "mri.nrrd", "--output-dir", out, "--iterations", "15", "--stages", "Rigid,Affine",
         "--no-resampled", "--no-fail-on-sanity", "--quiet"], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")])))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    used = report["result"]["settings"]
    assert used["preset"] == "mri-microct-knee" and used["optimizer"]["number_of_iterations"] == 15
    assert "number_of_iterations" in used["overrides"]
    affine = [s for s in report["result"]["stages"] if "Affine" in s["name"]]
    assert affine and 0 < affine[0]["iterations"] <= 15, affine


def test_auto_registers_as_the_preset_it_chose_and_says_so():
    pair = make_registration_pair("ct-mri", (8.0, 6.0), fixed_grid=GridSpec((70, 70, 70), (1.5, 1.5, 1.5)),
                                  moving_grid=GridSpec((100, 100, 24), (1.0, 1.0, 4.0)))
    auto = run(pair.fixed, pair.moving, settings_for_preset("auto"), qc_mode=None, resample=False)
    chosen = run(pair.fixed, pair.moving, settings_for_preset("mri-ct"), qc_mode=None, resample=False)
    assert np.array_equal(auto.result.transform.GetParameters(), chosen.result.transform.GetParameters())
    assert auto.result.settings.preset == "mri-ct"
    assert any(s.startswith("Preset auto chose mri-ct") for s in auto.report["plan"]["explanation"])
