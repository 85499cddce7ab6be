"""The generated case family (issue 15): exact answers, honest grids, seeds that reproduce, and a
fixed-seed subset through ``register`` that must succeed or refuse, never silently fail.

The algebra tests compare the moving image read through the TRUE transform with its source read
through the source's own answer (the porcine reference, or the phantom's anatomy): equal to
interpolation precision, while a transform 10 degrees off is not. The subset runs ``register``
with its defaults, as a user would: success is <= 2.5 mm mean error over tissue points (the porcine
reference is trusted to ~2 mm), a ``RegistrationFailedError`` is an honest refusal, and anything else
is a silent failure. Three of the cases were silent failures before issue 15's search and verdict.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib import register
from MultimodalKneeRegistrationLib.errors import RegistrationFailedError
from MultimodalKneeRegistrationLib.geometry import apply_matrix, index_to_physical_matrix, transform_to_matrix
from MultimodalKneeRegistrationLib.synthetic.case_family import (
    MAX_CUBE_VOXELS,
    CaseSpec,
    cached_case,
    draw_spec,
    family_specs,
    make_case,
)
from MultimodalKneeRegistrationLib.synthetic.microct_look import UNITS_PER_HU
from MultimodalKneeRegistrationLib.synthetic.phantom import INTENSITIES, LABELS, KneePhantom
from MultimodalKneeRegistrationLib.synthetic.porcine import PorcineSources, cube_grid, cut_cube
from MultimodalKneeRegistrationLib.synthetic.poses import axis_angle_matrix, pose, random_direction_matrix

SUCCESS_MM = 2.5
#: A transform 10 deg off the answer (about the points' centre): what "a known wrong transform" means.
WRONG_DEG = 10.0


@pytest.fixture(scope="module")
def sources(porcine_dir) -> PorcineSources:
    return PorcineSources(porcine_dir)


def sample(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``image`` at LPS ``points``; NaN outside the image."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    index = apply_matrix(np.linalg.inv(index_to_physical_matrix(image)), points)
    inside = np.all((index >= 0) & (index <= np.array(image.GetSize()) - 1.0), axis=1)
    values = np.full(len(points), np.nan)
    values[inside] = [image.EvaluateAtContinuousIndex(i.tolist(), sitk.sitkLinear) for i in index[inside]]
    return values


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    keep = ~np.isnan(a) & ~np.isnan(b)
    assert keep.sum() >= 50, "too few points inside both images"
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


def wrong(truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    return truth @ pose(axis_angle_matrix((1.0, 0.5, -0.3), WRONG_DEG), (0, 0, 0), points.mean(axis=0))


def subset(points: np.ndarray, count: int = 400) -> np.ndarray:
    return points[:: max(1, len(points) // count)]


@pytest.mark.realdata
@pytest.mark.parametrize("fine_fixed", [True, False], ids=["cube-fixed", "cube-moving"])
def test_cube_case_answer_is_exact(sources, fine_fixed):
    spec = draw_spec("cube", 11, sources, "any", side_mm=24.0, spacing_mm=0.3, noise_hu=0.0, units="hu",
                     fine_fixed=fine_fixed, grid_direction=tuple(random_direction_matrix(
                         np.random.default_rng(4), flipped=not fine_fixed).ravel()))
    case = make_case(spec, sources)
    points = subset(case.points)
    if fine_fixed:  # the MR's header was moved: read through the answer it equals the MR read through the reference
        source = sample(sources.mr, apply_matrix(sources.reference, points))
        assert np.nanmax(np.abs(sample(case.moving, apply_matrix(case.truth, points)) - source)) < 1e-3
        assert correlation(sample(case.fixed, points), sample(sources.ct, points)) > 0.97  # the cube is the CT
    else:  # the cube's header was moved: read through the answer it shows the CT where the reference says
        source = sample(sources.ct, apply_matrix(np.linalg.inv(sources.reference), points))
        assert correlation(sample(case.moving, apply_matrix(case.truth, points)), source) > 0.97
    assert correlation(sample(case.moving, apply_matrix(wrong(case.truth, points), points)), source) < 0.8
    assert spec.start_group == "any" and case.facts["start_error_mm"] > 0


@pytest.mark.realdata
def test_pair_case_answer_is_exact(sources):
    case = make_case(draw_spec("pair", 12, sources, "any", fine_fixed=False, ct_shrink=2), sources)
    assert (case.fixed_kind, case.moving_kind) == ("MR", "CT 2x")
    points = subset(case.points)
    source = sample(sources.ct_shrunk(2), apply_matrix(np.linalg.inv(sources.reference), points))
    through_truth = sample(case.moving, apply_matrix(case.truth, points))
    assert np.nanmax(np.abs(through_truth - source)) < 1e-2
    assert correlation(sample(case.moving, apply_matrix(wrong(case.truth, points), points)), source) < 0.8


def test_phantom_case_answer_shows_the_same_anatomy():
    case = make_case(draw_spec("phantom", 13, None, "any", phantom_fine="microct", fine_fixed=False))
    assert (case.fixed_kind, case.moving_kind) == ("phantom MR", "phantom micro-CT")
    points = subset(case.points)
    tissue = {label: name.split("_")[-1] for name, label in LABELS.items()}
    tissue[LABELS["background"]] = "air"
    expected = np.array([INTENSITIES["ct"][tissue[label]] for label in KneePhantom().label_at(points)], float)
    assert correlation(sample(case.moving, apply_matrix(case.truth, points)), expected) > 0.9
    assert correlation(sample(case.moving, apply_matrix(wrong(case.truth, points), points)), expected) < 0.6


@pytest.mark.realdata
def test_oblique_and_left_handed_cube_grids(sources):
    direction = random_direction_matrix(np.random.default_rng(5), flipped=True)
    center = sources.bone_points[len(sources.bone_points) // 2]
    grid = cube_grid(center, 20.0, 0.5, direction)
    assert np.linalg.det(np.reshape(grid.GetDirection(), (3, 3))) == pytest.approx(-1.0)
    assert grid.GetSize() == (40, 40, 40)
    middle = apply_matrix(index_to_physical_matrix(grid), [[19.5, 19.5, 19.5]])[0]
    np.testing.assert_allclose(middle, center, atol=1e-9)
    hu, units = cut_cube(sources.ct, grid, 0.0, "hu", 0), cut_cube(sources.ct, grid, 0.0, "scaled", 0)
    assert (hu.GetPixelID(), units.GetPixelID()) == (sitk.sitkInt16, sitk.sitkUInt16)
    index = np.random.default_rng(6).integers(0, 40, size=(30, 3))
    physical = apply_matrix(index_to_physical_matrix(grid), index.astype(float))  # index order follows the grid
    expected = sample(sources.ct, physical)
    got = np.array([hu.GetPixel(*map(int, i)) for i in index], float)
    np.testing.assert_allclose(got, expected, atol=0.51)
    scaled = np.array([units.GetPixel(*map(int, i)) for i in index], float)
    np.testing.assert_allclose(scaled, np.clip((expected + 1024) * UNITS_PER_HU, 0, 65535), atol=UNITS_PER_HU)


@pytest.mark.realdata
def test_specs_reproduce_from_the_seed(sources):
    specs = family_specs(12, seed=3, sources=sources)
    assert specs == family_specs(12, seed=3, sources=sources)
    assert [s.key() for s in specs] != [s.key() for s in family_specs(12, seed=4, sources=sources)]
    assert [CaseSpec.from_dict(json.loads(json.dumps(s.to_dict()))) for s in specs] == specs
    assert [s.family for s in specs] == ["cube"] * 8 + ["pair"] * 2 + ["phantom"] * 2
    assert [s.start_group for s in specs[:4]] == ["within60", "any", "within60", "any"]
    for spec in specs:
        assert 0 <= spec.start_shift_mm <= 60 and 0 <= spec.start_angle_deg <= 180
        assert spec.start_angle_deg <= 60 or spec.start_group == "any"
    for cube in specs[:8]:
        assert 20 <= cube.side_mm <= 50 and 0.05 <= cube.spacing_mm <= 0.3 + 1e-9
        assert (cube.side_mm / cube.spacing_mm) ** 3 <= MAX_CUBE_VOXELS * 1.01
        assert sources.bone_fraction(cube_grid(cube.center, cube.side_mm, cube.side_mm / 16,
                                               np.reshape(cube.grid_direction, (3, 3)))) >= 0.05
    assert family_specs(4, seed=3, families=("phantom",)) == family_specs(4, seed=3, families=("phantom",))


def test_cached_case_is_written_once_and_reads_back(tmp_path):
    spec = draw_spec("phantom", 14, None, "within60", phantom_fine="ct", fine_fixed=True)
    first = cached_case(spec, None, tmp_path)
    stamp = first.fixed_path.stat().st_mtime_ns
    again = cached_case(spec, None, tmp_path)
    assert again.fixed_path.stat().st_mtime_ns == stamp and again.spec == spec
    np.testing.assert_array_equal(again.truth, first.truth)
    fixed, moving = again.images()
    assert fixed.GetSize() == tuple(first.facts["fixed_size"]) and moving.GetSize() == tuple(first.facts["moving_size"])
    assert [p.name for p in tmp_path.iterdir()] == [f"{spec.name}-{spec.key()}"]


def _issue_cube(sources):
    return draw_spec("cube", 7, sources, "within60", side_mm=40.0, spacing_mm=0.2, start_angle_deg=15.0,
                     start_shift_mm=25.0, fine_fixed=True)


#: (id, needs porcine data, spec builder, why it is here); ~50 s together on 2 cores for the first five.
#: Before issue 15's search and verdict the third to fifth were silent failures (exit 0 at 62.9, 46.3 and
#: 123.7 mm mean). The last two are cubes with the micro-CT look (issue 18: texture, rings, cupping, cylinder).
SUBSET = [
    ("phantom-within60", False, lambda s: draw_spec("phantom", 21, None, "within60", phantom_fine="microct",
                                                    fine_fixed=True), "an easy start"),
    ("pair-ct2x-96deg", True, lambda s: draw_spec("pair", 1004, s, "any"), "a 96 deg start"),
    ("phantom-any-150deg", False, lambda s: draw_spec("phantom", 1005, None, "any"), "150 deg, MR fixed"),
    ("cube-40mm-15deg", True, _issue_cube, "40 mm cube at 0.2 mm, oblique, fixed; 15 deg + 25 mm"),
    ("pair-1049", True, lambda s: draw_spec("pair", 1049, s, "any"), "a near-symmetric competitor 177 deg away"),
    ("mct-uint8-fixed", True, lambda s: draw_spec("cube", 18001, s, "within60", look="microct", units="uint8",
                                                  side_mm=24.0, spacing_mm=0.15, noise_hu=30.0, fine_fixed=True,
                                                  label="mct-uint8"), "micro-CT look, 8-bit, 24 mm at 0.15 mm"),
    ("mct-inverted-moving", True, lambda s: draw_spec("cube", 18002, s, "within60", look="microct", units="inverted",
                                                      side_mm=24.0, spacing_mm=0.15, noise_hu=40.0, fine_fixed=False,
                                                      label="mct-inverted"), "micro-CT look, inverted, MR fixed"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "needs_data, build", [pytest.param(needs, build, id=name) for name, needs, build, _ in SUBSET])
def test_family_subset_succeeds_or_refuses(request, needs_data, build):
    sources = PorcineSources(request.getfixturevalue("porcine_dir")) if needs_data else None
    case = make_case(build(sources), sources)
    try:
        result = register(case.fixed, case.moving)
    except RegistrationFailedError:
        return  # an honest refusal: no transform handed to the user
    error = case.errors_mm(transform_to_matrix(result.transform))
    assert error.mean() <= SUCCESS_MM, (f"SILENT FAILURE: {error.mean():.1f} mm mean ({error.max():.1f} max) "
                                        f"returned as a success on {case.name}: {case.description}")
