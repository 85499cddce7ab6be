"""The command line, run for real in a subprocess on small synthetic pairs with a known answer."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

PACKAGE_PARENT = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration"
#: Fixed point p lies at moving point p + SHIFT (mm): the transform the CLI must recover.
SHIFT = np.array([4.0, -3.0, 2.0])
FAST = ["--preset", "fast-preview"]


def run_cli(*args, cwd=None, timeout=120, **streams) -> subprocess.CompletedProcess:
    """``python -m MultimodalKneeRegistrationLib ARGS`` with the package importable even if not installed."""
    path = os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    streams = streams or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run([sys.executable, "-m", "MultimodalKneeRegistrationLib", *map(str, args)],
                          text=True, cwd=cwd, timeout=timeout, env=env, **streams)


def blob_image(size: int = 60, seed: int = 0) -> sitk.Image:
    """Blurred blobs of different brightness on a 1 mm grid centred on the origin."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32)
    array = np.zeros((size, size, size), np.float32)
    for _ in range(8):
        c, r, v = rng.uniform(size * 0.25, size * 0.75, 3), rng.uniform(4, 10), rng.uniform(100, 1000)
        array += v * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * r * r))
    image = sitk.GetImageFromArray(array)
    image.SetOrigin([-size / 2.0] * 3)
    return image


def remapped_moving(fixed: sitk.Image, shift=SHIFT, scale: float = 1.0, grid: int = 60) -> sitk.Image:
    """The fixed content moved by ``shift`` (and scaled), with a non-linear intensity remapping."""
    reference = sitk.Image([grid] * 3, sitk.sitkFloat32)
    reference.SetOrigin([-grid / 2.0] * 3)
    to_fixed = sitk.AffineTransform(3)  # moving point q shows fixed point (q - shift) / scale
    to_fixed.SetMatrix((np.eye(3) / scale).ravel().tolist())
    to_fixed.SetTranslation((-np.asarray(shift) / scale).tolist())
    moved = sitk.GetArrayFromImage(sitk.Resample(fixed, reference, to_fixed, sitk.sitkLinear, 0.0))
    remapped = np.sqrt(np.maximum(moved, 0.0)) * 10.0 + np.random.default_rng(1).normal(0, 1, moved.shape)
    image = sitk.GetImageFromArray(remapped.astype(np.float32))
    image.CopyInformation(reference)
    return image


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("pair")
    fixed = blob_image()
    sitk.WriteImage(fixed, str(folder / "fixed.nrrd"))
    sitk.WriteImage(remapped_moving(fixed), str(folder / "moving.nii.gz"))
    return folder / "fixed.nrrd", folder / "moving.nii.gz"


def assert_recovers_shift(transform_path: Path) -> None:
    transform = sitk.ReadTransform(str(transform_path))
    for point in ([0.0, 0.0, 0.0], [10.0, -12.0, 8.0], [-15.0, 14.0, -9.0]):
        mapped = np.array(transform.TransformPoint(point))
        assert np.linalg.norm(mapped - (np.array(point) + SHIFT)) < 1.0, (point, mapped)


def test_register_writes_all_outputs_and_recovers_the_shift(pair, tmp_path):
    fixed, moving = pair
    out = tmp_path / "out"
    done = run_cli("register", fixed, moving, "--output-dir", out, *FAST)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["qc.png", "registered_moving.nrrd", "report.json",
                                                     "transform.tfm"]
    assert_recovers_shift(out / "transform.tfm")
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and report["verdict"]["passed"] is True
    assert report["outputs"]["transform"] == str((out / "transform.tfm").resolve())
    assert report["inputs"]["fixed"] == str(fixed.resolve())
    assert report["command"].startswith("knee-register register")
    resampled, fixed_image = sitk.ReadImage(str(out / "registered_moving.nrrd")), sitk.ReadImage(str(fixed))
    assert resampled.GetSize() == fixed_image.GetSize() and resampled.GetOrigin() == fixed_image.GetOrigin()
    assert sitk.ReadImage(str(out / "qc.png")).GetNumberOfComponentsPerPixel() == 3
    assert "transform (fixed -> moving, LPS)" in done.stdout and "Traceback" not in done.stderr
    assert "%" in done.stderr  # progress lines (stderr is not a TTY here)

    # An existing output is refused before any work: even the (missing) input is not looked at.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_cli("register", fixed.with_name("absent.nrrd"), moving, "--output-dir", out, *FAST)
    assert again.returncode == 3
    assert "already exist in" in again.stderr and "--overwrite" in again.stderr
    assert "%" not in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    quiet = run_cli("register", fixed, moving, "--output-dir", out, *FAST, "--overwrite", "--quiet",
                    "--no-resampled", "--qc-mode", "checkerboard")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (out / "transform.tfm").stat().st_mtime_ns > before["transform.tfm"]
    # The set is replaced as a whole: the earlier run's resampled image does not linger beside it.
    assert not (out / "registered_moving.nrrd").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_missing_and_bad_inputs_exit_2_without_traceback(pair, tmp_path):
    fixed, moving = pair
    missing = run_cli("register", tmp_path / "nope.nrrd", moving, "--output-dir", tmp_path / "out", *FAST)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: fixed image") and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "out").exists()
    (tmp_path / "junk.tfm").write_text("not a transform\n")
    bad = run_cli("register", fixed, moving, "--output-dir", tmp_path / "out", "--initial-transform",
                  tmp_path / "junk.tfm")
    assert bad.returncode == 2 and "not a transform file" in bad.stderr and "Traceback" not in bad.stderr
    stages = run_cli("register", fixed, moving, "--output-dir", tmp_path / "out", "--stages", "Affine")
    assert stages.returncode == 2 and "first transform stage must be 'Rigid'" in stages.stderr
    usage = run_cli("register", fixed)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1  # one line, as every error
    assert usage.stderr.startswith("error: the following arguments are required: MOVING, --output-dir")
    assert "knee-register register --help" in usage.stderr


def test_inspect_prints_the_pair_and_the_plan_and_writes_nothing(pair):
    fixed, moving = pair
    before = sorted(p.name for p in fixed.parent.iterdir())
    done = run_cli("inspect", fixed, moving, *FAST, cwd=fixed.parent)
    assert done.returncode == 0, done.stderr
    assert "fixed: 60 x 60 x 60 voxels of 1 x 1 x 1 mm" in done.stdout
    assert "plan (fast-preview):" in done.stdout and done.stdout.count("\n  - ") >= 2
    assert sorted(p.name for p in fixed.parent.iterdir()) == before
    auto = run_cli("inspect", fixed, moving, cwd=fixed.parent)  # the default preset says what it chose
    assert auto.returncode == 0, auto.stderr
    assert "plan (mri-ct):" in auto.stdout and "Preset auto chose mri-ct: " in auto.stdout


def test_inspect_prints_the_plan_register_runs(pair, tmp_path):
    """One plan resolution: ``inspect`` resolves ``auto`` and the overrides as ``register`` does."""
    fixed, moving = pair
    shown = run_cli("inspect", fixed, moving, "--iterations", "15", "--sampling-percentage", "0.2")
    assert shown.returncode == 0, shown.stderr
    out = tmp_path / "out"
    done = run_cli("register", fixed, moving, "--output-dir", out, "--iterations", "15", "--sampling-percentage",
                   "0.2", "--no-resampled", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    printed = shown.stdout[shown.stdout.index("plan ("):].splitlines()
    assert printed[0] == f"plan ({report['result']['settings']['preset']}):"
    planned = [line[len("  - "):] for line in printed[1:]]
    assert planned == report["plan"]["explanation"][:len(planned)]  # the run adds what it learnt after
    assert any(s.startswith("Preset auto chose") for s in planned)


def test_settings_round_trip_through_the_report(pair, tmp_path):
    """``--settings-from report.json`` reruns with the settings (and overrides) the earlier run used."""
    from MultimodalKneeRegistrationLib.settings import PRESETS, RegistrationSettings, settings_for_preset

    tuned = settings_for_preset("mri-microct-knee", number_of_iterations=15, transform_stages=("Rigid", "Affine"))
    for settings in (*PRESETS.values(), tuned):
        assert RegistrationSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    fixed, moving = pair
    first, second = tmp_path / "first", tmp_path / "second"
    done = run_cli("register", fixed, moving, "--output-dir", first, *FAST, "--iterations", "7", "--seed", "5",
                   "--no-resampled", "--quiet")
    assert done.returncode == 0, done.stderr
    again = run_cli("register", fixed, moving, "--output-dir", second, "--settings-from", first / "report.json",
                    "--no-resampled", "--quiet")
    assert again.returncode == 0, again.stderr
    reports = [json.loads((folder / "report.json").read_text()) for folder in (first, second)]
    assert reports[0]["result"]["settings"] == reports[1]["result"]["settings"]
    assert reports[1]["result"]["settings"]["overrides"] == ["number_of_iterations", "random_seed"]
    assert (first / "transform.tfm").read_bytes() == (second / "transform.tfm").read_bytes()
    both = run_cli("register", fixed, moving, "--output-dir", tmp_path / "x", "--settings-from", first / "report.json",
                   *FAST)
    assert both.returncode == 2 and "--preset and --settings-from" in both.stderr


def write_dicom_series(image: sitk.Image, folder: Path, uid: str, description: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        piece = image[:, :, k]
        for tag, value in (("0008|0060", "MR"), ("0008|103e", description), ("0020|000e", uid),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(k + 1)),
                           ("0008|0018", f"{uid}.{k + 1}"),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint(
                               (0, 0, k))))):
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{description[:2]}{k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_folder_with_two_series(pair, tmp_path):
    fixed, _ = pair
    moving = remapped_moving(sitk.ReadImage(str(fixed)))
    moving = sitk.Cast(sitk.RescaleIntensity(moving, 0, 3000), sitk.sitkInt16)
    write_dicom_series(moving, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.71", "T2 knee")
    write_dicom_series(moving[:, :, 10:30], tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.72", "PD slab")
    listing = run_cli("list-series", tmp_path / "dicom")
    assert listing.returncode == 0
    for text in ("2 DICOM series", "60 slices", "20 slices", "T2 knee", "PD slab"):
        assert text in listing.stdout
    ambiguous = run_cli("register", fixed, tmp_path / "dicom", "--output-dir", tmp_path / "out", *FAST)
    assert ambiguous.returncode == 2 and "Traceback" not in ambiguous.stderr
    assert "1.2.826.0.1.3680043.2.1125.71" in ambiguous.stderr
    assert "1.2.826.0.1.3680043.2.1125.72" in ambiguous.stderr
    assert "--moving-series-uid" in ambiguous.stderr
    chosen = run_cli("register", fixed, tmp_path / "dicom", "--output-dir", tmp_path / "out", *FAST,
                     "--moving-series-uid", "1.2.826.0.1.3680043.2.1125.71", "--resample-spacing", "2")
    assert chosen.returncode == 0, chosen.stderr
    assert_recovers_shift(tmp_path / "out" / "transform.tfm")
    inputs = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]
    assert inputs["moving_series_uid"] == "1.2.826.0.1.3680043.2.1125.71"  # the series actually read
    assert inputs["fixed_series_uid"] is None
    resampled = sitk.ReadImage(str(tmp_path / "out" / "registered_moving.nrrd"))
    assert resampled.GetSize() == (30, 30, 30) and resampled.GetSpacing() == (2.0, 2.0, 2.0)
    assert resampled.GetPixelID() == sitk.sitkInt16


def test_resample_grid_keeps_the_field_of_view_and_says_when_it_is_coarser(rotation):
    from MultimodalKneeRegistrationLib.geometry import corner_points
    from MultimodalKneeRegistrationLib.outputs.grids import AUTO_RESAMPLE_VOXELS, resample_grid

    fixed = blob_image(40)
    fixed.SetDirection(rotation((1, 2, 3), 25).ravel().tolist())
    coarse, note = resample_grid(fixed, 2.5)
    assert coarse.GetSize() == (16, 16, 16) and coarse.GetSpacing() == (2.5, 2.5, 2.5)
    assert "16x16x16" in note and "not the fixed image's 40x40x40" in note
    np.testing.assert_allclose(corner_points(coarse), corner_points(fixed), atol=1e-6)
    assert resample_grid(fixed, 0.5) == (None, None) and resample_grid(fixed, None) == (None, None)
    huge = sitk.Image([512, 512, 260], sitk.sitkUInt8)  # 68 M voxels: above the automatic limit
    huge.SetSpacing((0.3, 0.3, 0.6))
    auto, note = resample_grid(huge, None)
    assert 0.8 * AUTO_RESAMPLE_VOXELS < auto.GetNumberOfPixels() <= AUTO_RESAMPLE_VOXELS
    assert np.abs(corner_points(auto) - corner_points(huge)).max() < max(auto.GetSpacing())
    assert "68 M voxels, over 64 M" in note


def test_failed_sanity_checks_write_the_report_but_no_transform(pair, tmp_path):
    fixed, _ = pair
    scaled = tmp_path / "scaled.nrrd"  # 1.5x larger anatomy: an affine fit scales beyond the sanity limit
    sitk.WriteImage(remapped_moving(sitk.ReadImage(str(fixed)), shift=(0, 0, 0), scale=1.5, grid=90),
                    str(scaled))
    affine = [*FAST, "--stages", "Rigid,Affine", "--init-mode", "useGeometryAlign"]
    failed = run_cli("register", fixed, scaled, "--output-dir", tmp_path / "out", *affine)
    assert failed.returncode == 4, failed.stderr
    assert "sanity checks" in failed.stderr and "No transform was written" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["qc.png", "report.json"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "refused" and report["verdict"]["passed"] is False
    assert report["verdict"]["checks"]["scale_factors"]["passed"] is False
    assert "transform" not in report["outputs"] and "qc" in report["outputs"]
    forced = run_cli("register", fixed, scaled, "--output-dir", tmp_path / "forced", *affine,
                     "--no-fail-on-sanity", "--no-resampled")
    assert forced.returncode == 0, forced.stderr
    assert "FAILED its sanity checks" in forced.stderr
    assert (tmp_path / "forced" / "transform.tfm").is_file()


def test_ctrl_c_exits_130_and_writes_nothing(pair, tmp_path):
    fixed, _ = pair
    scaled = tmp_path / "scaled.nrrd"
    sitk.WriteImage(remapped_moving(sitk.ReadImage(str(fixed)), scale=1.2, grid=80), str(scaled))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT))
    process = subprocess.Popen(
        [sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", str(fixed), str(scaled),
         "--output-dir", str(tmp_path / "out"), "--stages", "Rigid,Affine"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in process.stderr:  # wait until the registration itself runs
        lines.append(line)
        if "initialising" in line:
            break
    process.send_signal(signal.SIGINT)
    rest_out, rest_err = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(lines) + rest_err
    assert "cancelled" in rest_err and "nothing was written" in rest_err and "Traceback" not in rest_err
    assert not (tmp_path / "out").exists()  # not even an empty folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_progress_bar_on_a_terminal(pair, tmp_path):
    fixed, moving = pair
    controller, terminal = pty.openpty()
    chunks = []
    reader = threading.Thread(target=lambda: _drain(controller, chunks), daemon=True)
    reader.start()
    done = run_cli("register", fixed, moving, "--output-dir", tmp_path / "out", *FAST, stderr=terminal,
                   stdout=subprocess.PIPE)
    os.close(terminal)
    reader.join(timeout=10)
    text = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, text
    assert "\r[" in text and "#" * 30 + "] 100%" in text


def _drain(fd: int, chunks: list) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


def test_an_engine_that_fails_exits_6_with_its_own_message(pair, tmp_path):
    """A BRAINSFit that crashes (a real process exiting 3) or is missing is an engine error (exit 6),
    not a refusal (exit 4): nothing was judged, and nothing is written."""
    fixed, moving = pair
    crashing = tmp_path / "BRAINSFit"
    crashing.write_text("#!/bin/sh\necho 'Segmentation fault: something broke' >&2\nexit 3\n")
    crashing.chmod(0o755)
    crashed = run_cli("register", fixed, moving, "--output-dir", tmp_path / "out", *FAST,
                      "--engine", "brainsfit", "--brainsfit", crashing)
    assert crashed.returncode == 6, crashed.stderr
    assert "\nerror: BRAINSFit failed (exit status 3): Segmentation fault: something broke." in crashed.stderr
    assert "SimpleITK engine" in crashed.stderr and "Traceback" not in crashed.stderr
    missing = run_cli("register", fixed, moving, "--output-dir", tmp_path / "out", *FAST,
                      "--engine", "BRAINSFIT", "--brainsfit", tmp_path / "no-such-brainsfit")
    assert missing.returncode == 6 and "is not an executable file" in missing.stderr, missing.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("text, name", [("brainsfit", "BRAINSFit"), ("SIMPLEITK", "SimpleITK"),
                                        ("BRAINSFit", "BRAINSFit")])
def test_engine_names_in_any_case(text, name):
    from MultimodalKneeRegistrationLib.cli import build_parser

    args = build_parser().parse_args(["register", "f.nrrd", "m.nrrd", "--output-dir", "out", "--engine", text])
    assert args.engine == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["inspect", "f.nrrd", "m.nrrd", "--engine", "elastix"])


@pytest.mark.parametrize("word, value", [("auto", None), ("on", True), ("off", False)])
def test_edge_correlation_option_sets_the_search_setting(word, value):
    from MultimodalKneeRegistrationLib.cli import build_parser, settings_from_args

    line = ["register", "f.nrrd", "m.nrrd", "--output-dir", "out", "--edge-correlation", word]
    args = build_parser().parse_args(line)
    assert settings_from_args(args).search.edge_correlation is value
    default = build_parser().parse_args(["inspect", "f.nrrd", "m.nrrd"])
    assert settings_from_args(default).search.edge_correlation is None


def test_search_retry_asks_for_the_denser_second_search():
    from MultimodalKneeRegistrationLib.cli import build_parser, settings_from_args

    line = ["register", "f.nrrd", "m.nrrd", "--output-dir", "out", "--preset", "mri-microct-knee"]
    assert settings_from_args(build_parser().parse_args(line)).search.retry_fill_rotations == 0
    on = settings_from_args(build_parser().parse_args(line + ["--search-retry"]))
    assert on.search.retry_fill_rotations == 1400 and "search_retry_fill_rotations" in on.overrides
