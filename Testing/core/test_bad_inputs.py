"""Bad and unusual inputs, table-driven: each row either registers correctly or fails with a clear
message and the documented exit code, through the core API and through the command line.

Why: the forum's failed runs began with an input that was not what the user thought and ended in
an ITK stack dump. Every row here asserts, besides its own outcome, that the inputs are unchanged
(SHA-256 before/after), that no traceback reaches the user, and that a failed run leaves no
transform or resampled image behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib import register, settings_for_preset
from MultimodalKneeRegistrationLib.errors import (
    CancelledError,
    InputError,
    KneeRegistrationError,
    OutputError,
)
from MultimodalKneeRegistrationLib.io.atomic import write_transform_atomic
from MultimodalKneeRegistrationLib.io.images import load_image
from MultimodalKneeRegistrationLib.io.transforms import read_transform

PACKAGE_PARENT = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration"
#: Fixed point p shows the same anatomy as moving point p + SHIFT (mm).
SHIFT = np.array([3.0, -2.0, 1.5])
SIZE = 40
PROBES = ([0.0, 0.0, 0.0], [8.0, -6.0, 5.0], [-7.0, 5.0, -6.0])


def blobs(size=(SIZE, SIZE, SIZE), spacing=(1.0, 1.0, 1.0), shift=(0.0, 0.0, 0.0), seed: int = 0,
          extent_mm: float = 40.0) -> sitk.Image:
    """Blurred blobs (float32) on a grid centred on the origin; ``shift`` moves the content (mm)."""
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)
    size = np.asarray(size, int)
    axes = [(np.arange(n) - (n - 1) / 2.0) * s - d for n, s, d in zip(size, spacing, shift)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    array = np.zeros(x.shape, np.float32)
    for _ in range(8):
        c, r, v = rng.uniform(-0.25, 0.25, 3) * extent_mm, rng.uniform(3, 7), rng.uniform(100, 1000)
        array += v * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * r * r))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin((-(size - 1) / 2.0 * spacing).tolist())
    return image


def as_type(image: sitk.Image, pixel: int) -> sitk.Image:
    """``image`` rescaled into the range of ``pixel`` and cast to it."""
    ranges = {sitk.sitkUInt8: (0, 250), sitk.sitkInt16: (-1000, 3000), sitk.sitkUInt16: (0, 4000),
              sitk.sitkInt32: (-50_000, 200_000)}
    if pixel in ranges:
        return sitk.Cast(sitk.RescaleIntensity(image, *ranges[pixel]), pixel)
    return sitk.Cast(image, pixel)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_checksums(paths: List[Path]) -> Dict[str, str]:
    files = [p for root in paths if root.exists() for p in ([root] if root.is_file() else sorted(root.iterdir()))]
    return {str(p): sha256(p) for p in files if p.is_file()}


# ---- what each row expects ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Registers:
    """The run succeeds and the transform maps the probes to probe + ``shift`` within ``tolerance_mm``."""

    shift: Tuple[float, float, float] = tuple(SHIFT)
    tolerance_mm: float = 1.0


@dataclass(frozen=True)
class Fails:
    """The run fails with ``error`` whose message contains ``text``; the CLI exits with ``code``."""

    error: type
    text: str
    code: int


@dataclass
class Case:
    """Inputs built in a folder: paths, CLI extras, and the output folder (``out``)."""

    fixed: Path
    moving: Path
    out: Path
    initial: Optional[Path] = None
    cli_extra: List[str] = field(default_factory=list)
    must_survive: Dict[Path, str] = field(default_factory=dict)  # pre-existing outputs: path -> sha256


@dataclass(frozen=True)
class Row:
    name: str
    build: Callable[[Path], Case]
    expect: object


# ---- input builders -----------------------------------------------------------------------------------

def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _pair(folder: Path, moving: Optional[sitk.Image] = None, fixed: Optional[sitk.Image] = None,
          moving_name: str = "moving.nrrd") -> Case:
    fixed_path = _write(fixed if fixed is not None else blobs(), folder / "fixed.nrrd")
    moving_path = _write(moving if moving is not None else blobs(shift=SHIFT), folder / moving_name)
    return Case(fixed_path, moving_path, folder / "out")


def write_dicom_series(image: sitk.Image, folder: Path, uid: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0020|000e", uid), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
                           ("0008|0060", "MR"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in origin)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0008|0018", f"{uid}.{k + 1}")):
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-2:]}_{k:03d}.dcm"))
        writer.Execute(slice_)


def missing_file(folder: Path) -> Case:
    case = _pair(folder)
    return Case(case.fixed, folder / "no_such_moving.nrrd", case.out)


def corrupt_file(folder: Path) -> Case:
    case = _pair(folder)
    bad = folder / "corrupt.nrrd"
    bad.write_bytes(os.urandom(4096))
    return Case(case.fixed, bad, case.out)


def truncated_nrrd(folder: Path) -> Case:
    case = _pair(folder)
    raw = case.moving.read_bytes()
    bad = folder / "truncated.nrrd"
    bad.write_bytes(raw[: len(raw) // 3])
    return Case(case.fixed, bad, case.out)


def empty_folder(folder: Path) -> Case:
    case = _pair(folder)
    (folder / "empty").mkdir()
    return Case(case.fixed, folder / "empty", case.out)


def two_series(folder: Path) -> Case:
    case = _pair(folder)
    moving = as_type(blobs(size=(SIZE, SIZE, 12), spacing=(1.0, 1.0, 3.0)), sitk.sitkInt16)
    write_dicom_series(moving, folder / "dicom", "1.2.826.0.1.3680043.2.1125.81")
    write_dicom_series(moving[:, :, 2:8], folder / "dicom", "1.2.826.0.1.3680043.2.1125.82")
    return Case(case.fixed, folder / "dicom", case.out)


def image_2d(folder: Path) -> Case:
    return _pair(folder, moving=blobs(shift=SHIFT)[:, :, SIZE // 2])


def image_4d(folder: Path) -> Case:
    volume = blobs(shift=SHIFT)
    return _pair(folder, moving=sitk.JoinSeries([volume, volume]))


def constant(folder: Path) -> Case:
    return _pair(folder, moving=sitk.Image([SIZE] * 3, sitk.sitkInt16) + 7)


def all_zero(folder: Path) -> Case:
    return _pair(folder, fixed=sitk.Image([SIZE] * 3, sitk.sitkFloat32))


def nan_inf_voxels(folder: Path) -> Case:
    array = sitk.GetArrayFromImage(blobs(shift=SHIFT))
    array[:4] = np.nan  # a slab of NaN at one end, and scattered Inf
    array[20, 5:9, 5:9] = np.inf
    moving = sitk.GetImageFromArray(array)
    moving.CopyInformation(blobs())
    return _pair(folder, moving=moving)


def thin_slab(folder: Path) -> Case:
    return _pair(folder, moving=blobs(size=(SIZE, SIZE, 3), shift=SHIFT))


def extreme_anisotropy(folder: Path) -> Case:
    # 0.1 x 0.1 x 10 mm voxels over 30 x 30 x 40 mm: the moving image has 4 slices.
    return _pair(folder, moving=blobs(size=(300, 300, 4), spacing=(0.1, 0.1, 10.0), shift=SHIFT))


def same_volume(folder: Path) -> Case:
    case = _pair(folder)
    return Case(case.fixed, case.fixed, case.out)


def far_apart(folder: Path) -> Case:
    moving = blobs(shift=SHIFT)
    moving.SetOrigin((np.array(moving.GetOrigin()) + [500.0, 0.0, 0.0]).tolist())
    return _pair(folder, moving=moving)


def pixel_type(pixel: int) -> Callable[[Path], Case]:
    return lambda folder: _pair(folder, moving=as_type(blobs(shift=SHIFT), pixel))


def _with_initial(folder: Path, transform: sitk.Transform, file_name: str) -> Case:
    case = _pair(folder)
    path = folder / file_name
    sitk.WriteTransform(transform, str(path))
    case.initial, case.cli_extra = path, ["--initial-transform", str(path)]
    return case


def displacement_field(folder: Path) -> Case:
    displacement = np.random.default_rng(3).normal(0.0, 2.0, (9, 9, 9, 3))
    field_image = sitk.GetImageFromArray(displacement, isVector=True)
    field_image.SetOrigin([-20.0] * 3)
    field_image.SetSpacing([5.0] * 3)
    return _with_initial(folder, sitk.DisplacementFieldTransform(field_image), "deformable.h5")


def zero_bspline_in_composite(folder: Path) -> Case:
    # A fresh B-spline is zero everywhere: probing points cannot tell it from an identity.
    bspline = sitk.BSplineTransformInitializer(blobs(), [4, 4, 4])
    return _with_initial(folder, sitk.CompositeTransform([sitk.TranslationTransform(3, [1.0, 0, 0]), bspline]),
                         "composite.h5")


def output_under_file(folder: Path) -> Case:
    case = _pair(folder)
    blocker = folder / "somefile.txt"
    blocker.write_text("not a folder\n")
    case.out = blocker / "out"
    case.must_survive[blocker] = sha256(blocker)
    return case


def existing_output(folder: Path) -> Case:
    case = _pair(folder)
    case.out.mkdir()
    old = case.out / "transform.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3, [9.0, 9.0, 9.0]), str(old))
    case.must_survive[old] = sha256(old)
    return case


ROWS = [
    Row("missing file", missing_file, Fails(InputError, "does not exist", 2)),
    Row("garbage bytes .nrrd", corrupt_file, Fails(InputError, "is not a valid .nrrd file", 2)),
    Row("truncated .nrrd", truncated_nrrd, Fails(InputError, "damaged or incomplete", 2)),
    Row("empty folder", empty_folder, Fails(InputError, "holds no DICOM series", 2)),
    Row("folder with two DICOM series", two_series, Fails(InputError, "holds 2 DICOM series", 2)),
    Row("2D image", image_2d, Fails(InputError, "is a 2D image", 2)),
    Row("4D image", image_4d, Fails(InputError, "is 4D", 2)),
    Row("constant image", constant, Fails(InputError, "is constant (every voxel is 7)", 2)),
    Row("all-zero image", all_zero, Fails(InputError, "is constant (every voxel is 0)", 2)),
    Row("NaN and Inf voxels", nan_inf_voxels, Registers()),
    Row("3-voxel slab", thin_slab, Fails(InputError, "at least 4 voxels per axis", 2)),
    Row("0.1x0.1x10 mm voxels", extreme_anisotropy, Registers()),
    Row("same volume twice", same_volume, Registers(shift=(0.0, 0.0, 0.0), tolerance_mm=0.5)),
    Row("no overlap at identity", far_apart, Registers(shift=tuple(SHIFT + [500.0, 0.0, 0.0]))),
    *[Row(f"moving {name}", pixel_type(pixel), Registers()) for name, pixel in (
        ("uint8", sitk.sitkUInt8), ("int16", sitk.sitkInt16), ("uint16", sitk.sitkUInt16),
        ("int32", sitk.sitkInt32), ("float32", sitk.sitkFloat32), ("float64", sitk.sitkFloat64))],
    Row("displacement-field initial transform", displacement_field,
        Fails(InputError, "not rigid or affine (it holds a DisplacementFieldTransform)", 2)),
    Row("B-spline inside a composite", zero_bspline_in_composite,
        Fails(InputError, "not rigid or affine (it holds a BSplineTransform)", 2)),
    Row("output folder under a file", output_under_file, Fails(OutputError, "cannot write into folder", 3)),
    Row("existing output, no --overwrite", existing_output, Fails(OutputError, "already exists", 3)),
]
#: Rows also run through the command line (every failing row, and a few registering ones).
CLI_ROWS = [row for row in ROWS if isinstance(row.expect, Fails)] + [
    row for row in ROWS if row.name in ("NaN and Inf voxels", "no overlap at identity", "moving uint8")]


# ---- running a row --------------------------------------------------------------------------------------

FAST = settings_for_preset("fast-preview")


def run_core(case: Case, should_cancel=None, progress=None) -> sitk.Transform:
    """What a script using the library does: load, register, write the transform."""
    fixed = load_image(case.fixed, name="fixed image")
    moving = load_image(case.moving, name="moving image")
    initial = read_transform(case.initial) if case.initial else None
    result = register(fixed, moving, FAST, initial_transform=initial, progress=progress,
                      should_cancel=should_cancel)
    write_transform_atomic(result.transform, case.out / "transform.tfm")
    return result.transform


def run_cli(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "MultimodalKneeRegistrationLib", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def cli_register(case: Case) -> subprocess.CompletedProcess:
    return run_cli("register", case.fixed, case.moving, "--output-dir", case.out, "--preset", "fast-preview",
                   "--no-resampled", *case.cli_extra)


def assert_maps_shift(transform: sitk.Transform, expect: Registers) -> None:
    for point in PROBES:
        mapped = np.array(transform.TransformPoint(point))
        error = np.linalg.norm(mapped - (np.array(point) + expect.shift))
        assert error < expect.tolerance_mm, (point, mapped, error)


def assert_nothing_half_written(case: Case) -> None:
    for name in ("transform.tfm", "registered_moving.nrrd"):
        assert not (case.out / name).exists() or case.out / name in case.must_survive, name
    if case.out.is_dir():
        leftovers = [p.name for p in case.out.iterdir() if p.name.startswith(".")]
        assert leftovers == [], leftovers


def checked(case: Case, run: Callable[[], None]) -> None:
    """Run ``run`` and check the invariants every row shares: inputs and old outputs unchanged."""
    before = input_checksums([case.fixed, case.moving] + ([case.initial] if case.initial else []))
    run()
    assert input_checksums([case.fixed, case.moving] + ([case.initial] if case.initial else [])) == before
    for path, digest in case.must_survive.items():
        assert sha256(path) == digest, f"{path} was modified"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_core_api(row: Row, tmp_path: Path) -> None:
    case = row.build(tmp_path)

    def run() -> None:
        if isinstance(row.expect, Registers):
            assert_maps_shift(run_core(case), row.expect)
            return
        with pytest.raises(KneeRegistrationError) as caught:
            run_core(case)
        assert type(caught.value) is row.expect.error, caught.value
        assert row.expect.text in str(caught.value)
        assert caught.value.exit_code == row.expect.code
        assert not re.search(r"itk::|0x[0-9a-f]{6}|\.cxx|\.h:\d", str(caught.value)), caught.value
        assert_nothing_half_written(case)

    checked(case, run)


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.name for row in CLI_ROWS])
def test_command_line(row: Row, tmp_path: Path) -> None:
    case = row.build(tmp_path)

    def run() -> None:
        done = cli_register(case)
        assert not re.search(r"Traceback|itk::|0x[0-9a-f]{6}|\.cxx", done.stderr), done.stderr
        if isinstance(row.expect, Registers):
            assert done.returncode == 0, done.stderr
            assert_maps_shift(sitk.ReadTransform(str(case.out / "transform.tfm")), row.expect)
            return
        assert done.returncode == row.expect.code, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and row.expect.text in last, done.stderr
        assert_nothing_half_written(case)

    checked(case, run)


def test_nan_voxels_are_reported_as_a_warning(tmp_path: Path) -> None:
    case = nan_inf_voxels(tmp_path)
    result = register(load_image(case.fixed), load_image(case.moving), FAST)
    assert any("NaN/Inf voxels" in warning for warning in result.warnings), result.warnings


def test_cancel_after_a_few_progress_calls(tmp_path: Path) -> None:
    case = _pair(tmp_path)
    calls: List[float] = []

    def run() -> None:
        with pytest.raises(CancelledError) as caught:
            run_core(case, progress=lambda fraction, message: calls.append(fraction),
                     should_cancel=lambda: len(calls) >= 3)
        assert "cancelled" in str(caught.value) and caught.value.exit_code == 130
        assert_nothing_half_written(case)

    checked(case, run)
    assert len(calls) >= 3


def test_ctrl_c_in_the_middle_writes_nothing(tmp_path: Path) -> None:
    case = _pair(tmp_path, moving=blobs(size=(56, 56, 56), shift=SHIFT))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    before = input_checksums([case.fixed, case.moving])
    process = subprocess.Popen(
        [sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", str(case.fixed), str(case.moving),
         "--output-dir", str(case.out), "--stages", "Rigid,Affine"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in process.stderr:  # wait until the registration itself runs
        seen.append(line)
        if "initialising" in line:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + rest
    assert "Traceback" not in rest and "cancelled" in rest
    assert input_checksums([case.fixed, case.moving]) == before
    assert not case.out.exists() or list(case.out.iterdir()) == []



def test_python_api_refuses_a_deformable_initial_transform_even_where_it_is_zero():
    """A displacement field that is zero at the probe points must still be refused by class."""
    from MultimodalKneeRegistrationLib.errors import InputError as _InputError

    field = sitk.Image([8, 8, 8], sitk.sitkVectorFloat64, 3)
    field.SetOrigin((10.0, 10.0, 10.0))
    field.SetSpacing((5.0, 5.0, 5.0))
    field += 4.0
    deformable = sitk.DisplacementFieldTransform(field)
    image = sitk.GaussianSource(sitk.sitkFloat32, [32, 32, 32], [4.0] * 3, [16.0] * 3, 100.0)
    with pytest.raises(_InputError, match="not rigid or affine"):
        register(image, image, initial_transform=deformable)
