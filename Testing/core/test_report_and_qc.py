"""The JSON report and the QC picture (geometry of the panels, colours, speed on the real pair)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib import __version__
from MultimodalKneeRegistrationLib.errors import OutputError
from MultimodalKneeRegistrationLib.io.atomic import write_json_atomic
from MultimodalKneeRegistrationLib.outputs.qc_image import read_png_rgb, render_qc, write_qc_png
from MultimodalKneeRegistrationLib.outputs.report import build_report
from MultimodalKneeRegistrationLib.results import RegistrationResult, StageResult
from MultimodalKneeRegistrationLib.settings import PRESETS
from MultimodalKneeRegistrationLib.steps.inspection import inspect_pair
from MultimodalKneeRegistrationLib.verdict.record import Check, Verdict

GAP = 6  # panel spacing of the unlabelled layout


def sphere(size, spacing, radius_mm=20.0, centre_mm=(0.0, 0.0, 0.0), value=1000.0) -> sitk.Image:
    """A bright ball on a dark background, centred at ``centre_mm`` on a grid centred on the origin."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin([-(n - 1) * s / 2.0 for n, s in zip(size, spacing)])
    coords = [np.arange(n) * s - (n - 1) * s / 2.0 for n, s in zip(size, spacing)]
    z, y, x = np.meshgrid(coords[2], coords[1], coords[0], indexing="ij")
    r = np.sqrt((x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2)
    array = (value / (1.0 + np.exp((r - radius_mm) / 0.7))).astype(np.float32) + 10.0
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def panels(picture: np.ndarray, count: int = 3) -> list:
    """Cut an unlabelled picture into its panels (they are separated by background columns)."""
    cut, x = [], GAP
    for _ in range(count):
        column = picture[GAP:, x:]
        width = int(np.argmax(np.all(column[:, :, 0] == 24, axis=0)))
        width = width if width > 0 else column.shape[1] - GAP
        cut.append(picture[GAP:-GAP, x:x + width])
        x += width + GAP
    return cut


def test_thick_slices_are_not_squashed_and_edges_sit_on_the_boundary():
    # 1 x 1 x 4 mm voxels: a ball must still look round in the coronal and sagittal panels.
    fixed = sphere((64, 64, 16), (1.0, 1.0, 4.0))
    moving = sphere((40, 40, 40), (1.6, 1.6, 1.6), value=300.0)
    picture = render_qc(fixed, moving, "edges", labels=False, closeup=False)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    for panel in panels(picture):
        bright = panel.min(axis=2) > 128  # gray, not amber
        rows, cols = np.nonzero(bright.any(axis=1))[0], np.nonzero(bright.any(axis=0))[0]
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert abs(height / width - 1.0) < 0.08, (height, width)
        amber = (panel[:, :, 0] > 180) & (panel[:, :, 2] < 90)
        assert amber.sum() > 100
        pixel_mm = 64.0 / panel.shape[1]
        cy, cx = (rows[0] + rows[-1]) / 2.0, (cols[0] + cols[-1]) / 2.0
        ay, ax = np.nonzero(amber)
        distance_mm = np.hypot(ay - cy, ax - cx) * pixel_mm
        assert abs(np.median(distance_mm) - 20.0) < 1.5  # the moving ball's edge, radius 20 mm


def test_transform_moves_the_edges():
    fixed = sphere((64, 64, 64), (1.0, 1.0, 1.0), radius_mm=15.0)
    shifted = sphere((64, 64, 64), (1.0, 1.0, 1.0), radius_mm=15.0, centre_mm=(8.0, 0.0, 0.0))

    def amber_offset_mm(transform):
        axial = panels(render_qc(fixed, shifted, transform=transform, labels=False, closeup=False))[0]
        amber = (axial[:, :, 0] > 180) & (axial[:, :, 2] < 90)
        bright_columns = np.nonzero((axial.min(axis=2) > 128).any(axis=0))[0]
        pixel_mm = 30.0 / (bright_columns[-1] - bright_columns[0] + 1)  # the fixed ball is 30 mm wide
        return (np.nonzero(amber)[1].mean() - bright_columns.mean()) * pixel_mm

    # fixed -> moving maps the fixed ball's centre onto the moving ball's centre: edges on the ball.
    assert abs(amber_offset_mm(sitk.TranslationTransform(3, (8.0, 0.0, 0.0)))) < 1.0
    # Without it the moving ball shows 8 mm towards +x (patient left, the picture's right).
    assert abs(amber_offset_mm(sitk.TranslationTransform(3, (0.0, 0.0, 0.0))) - 8.0) < 1.0


def test_checkerboard_png_round_trip_and_overwrite(tmp_path):
    fixed = sphere((40, 40, 40), (1.0, 1.0, 1.0))
    moving = sphere((40, 40, 40), (1.0, 1.0, 1.0), value=-500.0)
    path = write_qc_png(fixed, moving, tmp_path / "qc.png", mode="checkerboard")
    picture = read_png_rgb(path)
    assert picture.shape == render_qc(fixed, moving, "checkerboard").shape
    assert sitk.ReadImage(str(path)).GetNumberOfComponentsPerPixel() == 3
    tinted = (picture[:, :, 0].astype(int) - picture[:, :, 2]) > 30
    gray = (picture[:, :, 0] == picture[:, :, 2]) & (picture[:, :, 0] > 100)
    assert tinted.sum() > 1000 and gray.sum() > 1000
    with pytest.raises(OutputError, match="already exists"):
        write_qc_png(fixed, moving, path)
    write_qc_png(fixed, moving, path, overwrite=True)
    with pytest.raises(ValueError, match="unknown QC mode"):
        render_qc(fixed, moving, "plaid")


def test_qc_on_the_real_pair_has_bone_close_ups_both_ways(tmp_path, porcine_dir):
    """Overview, then close-ups on the CT's bone: MR edges on the CT, and CT edges on the MR.

    The picture's speed (about a second on the native pair) is measured in the benchmarks, not here.
    """
    data = porcine_dir
    ct, mr = sitk.ReadImage(str(data / "CT.nrrd")), sitk.ReadImage(str(data / "MR_T2.nrrd"))
    reference = sitk.ReadTransform(
        str(Path(__file__).resolve().parents[1] / "data" / "porcine_ct_to_mr_bone_aligned.tfm")
    )
    write_qc_png(ct, mr, tmp_path / "qc.png", transform=reference, caption=["PASSED ITS CHECKS", "MATTES MI"])
    picture = read_png_rgb(tmp_path / "qc.png")
    overview = read_png_rgb(write_qc_png(ct, mr, tmp_path / "overview.png", transform=reference, labels=False))
    assert 700 < picture.shape[1] < 1400 and picture.shape[0] > 2.5 * 300
    amber = (picture[:, :, 0] > 180) & (picture[:, :, 2] < 90)
    thirds = np.array_split(np.arange(picture.shape[0] - 80), 3)
    assert all(amber[rows].sum() > 2000 for rows in thirds)  # every row shows edges
    green = (picture[:, :, 1] > 200) & (picture[:, :, 0] < 160) & (picture[:, :, 2] < 160)
    assert green[-60:].sum() > 50  # the verdict, in green, under the panels
    assert overview.shape[0] > 300


def test_caption_colours_the_verdict():
    fixed = sphere((40, 40, 40), (1.0, 1.0, 1.0))
    passed = render_qc(fixed, fixed, caption=["PASSED ITS CHECKS", "MATTES MI -0.5 -> -0.9"])
    refused = render_qc(fixed, fixed, caption=["REFUSED: SHARED INFORMATION", "MATTES MI -0.5 -> -0.6"])
    assert passed.shape == refused.shape

    def coloured(picture, channel):
        others = [c for c in range(3) if c != channel]
        return ((picture[:, :, channel] > 200) & (picture[:, :, others].max(axis=2) < 170)).sum()

    assert coloured(passed, 1) > 50 and coloured(passed, 0) < coloured(passed, 1)
    assert coloured(refused, 0) > 50 and coloured(refused, 1) < coloured(refused, 0)


def fake_outcome(passed: bool = True):
    from MultimodalKneeRegistrationLib.errors import RegistrationFailedError
    from MultimodalKneeRegistrationLib.run import RunOutcome

    transform = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.1, (5.0, -2.0, 1.0))
    result = RegistrationResult(
        transform=transform, initial_transform=sitk.Euler3DTransform(), plan={"fine_image": "fixed"},
        settings=PRESETS["fast-preview"], metric_before=-0.1, metric_after=float("nan"),
        stages=[StageResult("Rigid", 42, "converged", -0.5, 1.25)], timings={"total": 2.0},
        warnings=["sanity check failed: x"] if not passed else [],
        verdict=Verdict((Check("metric_improved", 0.1, "> 0", passed, "x"),
                         Check("overlap_after", 0.9, ">= 0.5", True, "held"))),
    )
    refusal = None if passed else RegistrationFailedError("the result failed its sanity checks: x", "look")
    return RunOutcome(result, refusal, {})


def test_report_schema_content_and_atomic_strict_json(tmp_path):
    from MultimodalKneeRegistrationLib.outputs.report import REPORT_FORMAT_VERSION, REPORT_KEYS

    fixed = sphere((20, 20, 20), (1.0, 1.0, 1.0))
    inputs = {"fixed": tmp_path / "f.nrrd", "moving": "m.nrrd"}
    report = build_report(fake_outcome(passed=False), inputs=inputs, inspection=inspect_pair(fixed, fixed),
                          command="knee-register register f.nrrd m.nrrd --output-dir out",
                          resources={"wall_s": 2.5})
    assert set(REPORT_KEYS) <= set(report) and report["report_format_version"] == REPORT_FORMAT_VERSION == 2
    assert report["status"] == "refused" and report["verdict"]["passed"] is False
    assert report["verdict"]["failures"] == ["the result failed its sanity checks: x"]
    assert report["plan"] == {"fine_image": "fixed"} and "plan" not in report["result"]
    assert report["resources"]["wall_s"] == 2.5 and report["resources"]["peak_rss_mb"] > 10
    assert report["software"]["multimodal_knee_registration"] == __version__
    assert report["software"]["simpleitk"] == sitk.Version_VersionString()
    assert report["software"]["numpy"] == np.__version__
    assert report["host"]["cpu_count"] == os.cpu_count()
    assert report["result"]["stages"][0]["stop_condition"] == "converged"
    assert report["inputs"]["fixed"] == str(tmp_path / "f.nrrd")
    assert report["inspection"]["fixed"]["size"] == [20, 20, 20]
    path = write_json_atomic(report, tmp_path / "report.json")
    loaded = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))
    assert loaded["result"]["metric"]["after"] is None  # NaN became null
    assert loaded["result"]["settings"]["optimizer"]["transform_stages"] == ["Rigid"]
    assert loaded["command"].startswith("knee-register register")
    with pytest.raises(OutputError):
        write_json_atomic(report, path)
    ok = build_report(fake_outcome(passed=True), inputs={})
    assert ok["status"] == "ok" and ok["verdict"]["passed"] is True and set(REPORT_KEYS) <= set(ok)
