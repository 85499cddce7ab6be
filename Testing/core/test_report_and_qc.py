"""The JSON report and the QC picture (geometry of the panels, colours, speed on the real pair)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib import __version__
from MultimodalKneeRegistrationLib.errors import OutputError
from MultimodalKneeRegistrationLib.inspection import inspect_pair
from MultimodalKneeRegistrationLib.qc_image import read_png_rgb, render_qc, write_qc_png
from MultimodalKneeRegistrationLib.report import build_report, write_report
from MultimodalKneeRegistrationLib.results import RegistrationResult, StageResult
from MultimodalKneeRegistrationLib.settings import PRESETS

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
    picture = render_qc(fixed, moving, "edges", labels=False)
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
        axial = panels(render_qc(fixed, shifted, transform=transform, labels=False))[0]
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


def test_qc_on_the_real_pair_is_fast(tmp_path, porcine_dir):
    data = porcine_dir
    ct, mr = sitk.ReadImage(str(data / "CT.nrrd")), sitk.ReadImage(str(data / "MR_T2.nrrd"))
    reference = sitk.ReadTransform(
        str(Path(__file__).resolve().parents[1] / "data" / "porcine_ct_to_mr_bone_aligned.tfm")
    )
    start = time.perf_counter()
    write_qc_png(ct, mr, tmp_path / "qc.png", transform=reference)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"QC picture took {elapsed:.2f} s"
    picture = read_png_rgb(tmp_path / "qc.png")
    assert 300 < picture.shape[0] < 700 and 700 < picture.shape[1] < 1400
    assert ((picture[:, :, 0] > 180) & (picture[:, :, 2] < 90)).sum() > 2000


def fake_result(passed: bool = True) -> RegistrationResult:
    transform = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.1, (5.0, -2.0, 1.0))
    return RegistrationResult(
        transform=transform, initial_transform=sitk.Euler3DTransform(), plan={"fine_image": "fixed"},
        settings=PRESETS["fast-preview"], metric_before=-0.1, metric_after=float("nan"),
        stages=[StageResult("Rigid", 42, "converged", -0.5, 1.25)], timings={"total": 2.0},
        warnings=["sanity check failed: x"] if not passed else [],
        sanity={"metric_improved": {"passed": passed}}, passed_sanity_checks=passed, overlap_after=0.9,
    )


def test_report_content_and_atomic_strict_json(tmp_path):
    fixed = sphere((20, 20, 20), (1.0, 1.0, 1.0))
    inputs = {"fixed": tmp_path / "f.nrrd", "moving": "m.nrrd"}
    report = build_report(fake_result(passed=False), inputs=inputs,
                          inspection=inspect_pair(fixed, fixed), outputs={"report": tmp_path / "report.json"},
                          command="knee-register register f.nrrd m.nrrd --output-dir out")
    assert report["passed_sanity_checks"] is False
    assert report["software"]["multimodal_knee_registration"] == __version__
    assert report["software"]["simpleitk"] == sitk.Version_VersionString()
    assert report["software"]["numpy"] == np.__version__
    assert report["host"]["cpu_count"] == os.cpu_count()
    assert report["result"]["stages"][0]["stop_condition"] == "converged"
    assert report["inputs"]["fixed"] == str(tmp_path / "f.nrrd")
    assert report["inspection"]["fixed"]["size"] == [20, 20, 20]
    path = write_report(tmp_path / "report.json", report)
    loaded = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))
    assert loaded["result"]["metric"]["after"] is None  # NaN became null
    assert loaded["result"]["settings"]["transform_stages"] == ["Rigid"]
    assert loaded["command"].startswith("knee-register register")
    with pytest.raises(OutputError):
        write_report(path, report)
    assert build_report(None, inputs={})["passed_sanity_checks"] is False
