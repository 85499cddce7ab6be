"""Accuracy on the real porcine CT + MR T2 pair against its bone-aligned reference transform.

The data set's own reference_ct_to_mr.tfm aligns only the outline of the box-shaped specimen (a
half-turned optimum); Testing/data/README.md explains the bone-aligned one used here. Measured on
this machine (2026-11-24, mri-ct preset, three re-sampled Powell rounds): 0.69 mm mean / 1.50 mm
max from the header start (the MR is turned over: a 178 deg answer) and 0.68 / 1.15 mm with the MR
moved a further 30 deg and 40 mm; other sampling seeds gave 0.61-1.10 mm mean from the header
start. Tolerances: the benchmark target of 1.0 mm mean, and the measured max plus ~0.5 mm (the
reference is an optimum of the same kind of metric, not a fiducial truth). BRAINSFit with its
defaults returns exit code 0 on this pair with a transform that matches neither answer: the failure
these tests guard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib import register, settings_for_preset
from MultimodalKneeRegistrationLib.geometry import point_distances, rigid_from_matrix, transform_to_matrix

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: The shared data set's reference_ct_to_mr.tfm aligns only the specimen's outline (a half-turned
#: optimum); this one aligns the bone too. See Testing/data/README.md.
BONE_ALIGNED_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "porcine_ct_to_mr_bone_aligned.tfm"


@pytest.fixture(scope="module")
def pair(porcine_dir):
    ct = sitk.ReadImage(str(porcine_dir / "CT.nrrd"))
    mr = sitk.ReadImage(str(porcine_dir / "MR_T2.nrrd"))
    reference = sitk.ReadTransform(str(BONE_ALIGNED_REFERENCE))
    voxels = np.argwhere(sitk.GetArrayViewFromImage(ct)[::8, ::8, ::8] > -300)[:, ::-1] * 8
    matrix = np.array(ct.GetDirection()).reshape(3, 3) @ np.diag(ct.GetSpacing())
    specimen_points = voxels @ matrix.T + np.array(ct.GetOrigin())
    return ct, mr, reference, specimen_points


def moved(image: sitk.Image, angle_deg: float, shift_mm: float) -> tuple:
    """``image`` with its header moved rigidly by P (new point = P(old)); returns (image, P)."""
    center = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    motion = sitk.VersorRigid3DTransform()
    motion.SetCenter(center)
    axis = np.array([1.0, 1.0, 0.3])
    motion.SetRotation((axis / np.linalg.norm(axis)).tolist(), np.radians(angle_deg))
    direction = np.array([1.0, -1.0, 0.5])
    motion.SetTranslation((direction / np.linalg.norm(direction) * shift_mm).tolist())
    rotation = np.array(motion.GetMatrix()).reshape(3, 3)
    result = sitk.Image(image)
    result.SetDirection((rotation @ np.array(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    result.SetOrigin(motion.TransformPoint(image.GetOrigin()))
    return result, motion


def test_ct_fixed_mr_moving_from_identity(pair):
    ct, mr, reference, points = pair
    # Run to run, the result is bit-identical: test_reproducibility (every core count, the command line)
    # and, on this pair, test_logic_register. Registering it twice here cost a minute of the suite.
    result = register(ct, mr, settings_for_preset("mri-ct"))
    errors = point_distances(result.transform, reference, points)
    assert result.passed_sanity_checks
    assert result.metric_after < result.metric_before
    assert errors.mean() <= 1.0, f"mean {errors.mean():.2f} mm"
    assert errors.max() <= 2.0, f"max {errors.max():.2f} mm"


def test_mr_moved_30_degrees_40_mm_still_converges(pair):
    ct, mr, reference, points = pair
    moved_mr, motion = moved(mr, 30.0, 40.0)
    truth = sitk.CompositeTransform(3)
    truth.AddTransform(motion)
    truth.AddTransform(reference)  # applied first: CT -> MR, then the motion
    result = register(ct, moved_mr, settings_for_preset("mri-ct"))
    errors = point_distances(result.transform, truth, points)
    assert errors.mean() <= 1.0, f"mean {errors.mean():.2f} mm"
    assert errors.max() <= 1.75, f"max {errors.max():.2f} mm"


@pytest.fixture(scope="module")
def cube_case(pair):
    """A 40 mm cube of the CT around its bone, resampled to 0.2 mm: the moving "micro-CT" for the MR.

    Returns (mr, cube, truth: MR -> cube transform, MR points inside the cube to measure on)."""
    ct, mr, reference, _ = pair
    bone = np.argwhere(sitk.GetArrayViewFromImage(ct)[::4, ::4, ::4] > 600)[:, ::-1] * 4
    center = np.array(ct.TransformContinuousIndexToPhysicalPoint(bone.mean(axis=0).tolist()))
    cube = sitk.Resample(
        ct,
        [200] * 3,
        sitk.Transform(),
        sitk.sitkLinear,
        (center - 20).tolist(),
        [0.2] * 3,
        [1, 0, 0, 0, 1, 0, 0, 0, 1],
        -1000.0,
        sitk.sitkInt16,
    )
    grid = np.stack(np.meshgrid(*[np.linspace(-18, 18, 7)] * 3, indexing="ij"), -1).reshape(-1, 3) + center
    mr_points = np.array([reference.TransformPoint(p.tolist()) for p in grid])
    return mr, cube, reference.GetInverse(), mr_points


@pytest.fixture(scope="module")
def cube_run(cube_case):
    mr, cube, truth, mr_points = cube_case
    result = register(mr, cube, settings_for_preset("mri-microct-knee", fail_on_sanity_check=False))
    return result, point_distances(result.transform, truth, mr_points)


def test_microct_like_cube_from_a_rough_initial_transform(cube_case):
    """Without the edge correlation, a start 10 deg / 8.5 mm off (what a few landmarks give) still works.

    Measured 2026-11-24: 1.44 mm mean / 2.37 mm max. Then the pose-by-pose search preferred a
    look-alike 47 mm away that failed the shared-information check, and ``register`` kept the local
    refinement of the user's start; since the search refines its candidates by pattern search on its
    own scorer (2026-11-29) it finds the right pose itself (1.44 / 2.38 mm).
    """
    mr, cube, truth, mr_points = cube_case
    angle = np.radians(10.0)
    turn = np.eye(4)
    turn[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    middle = mr_points.mean(axis=0)
    turn[:3, 3] = middle - turn[:3, :3] @ middle + np.array([5.0, -5.0, 4.0])
    start = rigid_from_matrix(transform_to_matrix(truth) @ turn, middle)
    assert point_distances(start, truth, mr_points).mean() > 8.0
    settings = settings_for_preset("mri-microct-knee", search_edge_correlation=False)
    result = register(mr, cube, settings, initial_transform=start)
    errors = point_distances(result.transform, truth, mr_points)
    assert result.passed_sanity_checks
    assert errors.mean() <= 1.5, f"mean {errors.mean():.2f} mm"
    assert errors.max() <= 2.8, f"max {errors.max():.2f} mm"


def test_microct_like_cube_moving_mr_fixed(cube_run):
    """From the headers alone (the cube's header shares no frame with the MR's in general).

    Measured 2026-11-24: 1.44 mm mean / 2.37 mm max, the same as when started at the reference
    itself (1.44 mm): the edge correlation places the cube ~2 mm off, the rigid stage with its
    rotation restarts reaches the metric's optimum. Before both: 47 mm, rejected.
    """
    result, errors = cube_run
    assert result.passed_sanity_checks, result.sanity
    assert "edge correlation" in result.stages[0].stop_condition
    assert errors.mean() <= 1.5, f"mean {errors.mean():.2f} mm"
    assert errors.max() <= 2.8, f"max {errors.max():.2f} mm"


def test_microct_like_cube_is_never_a_silent_wrong_answer(cube_run):
    """Where the cube cannot be registered, the sanity checks must say so (BRAINSFit's failure mode
    on this pair was exit 0 with a transform 38 mm wrong)."""
    result, errors = cube_run
    assert errors.mean() <= 1.5 or not result.passed_sanity_checks, (
        f"mean {errors.mean():.2f} mm but passed sanity checks: {result.sanity}"
    )
