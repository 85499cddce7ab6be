"""Micro-CT formats: TIFF/BMP slice folders (voxel size from a SkyScan log, TIFF tags or --spacing)
and Scanco ISQ, read whole by ``load_image`` and streamed by ``read_block_averaged`` to the same result.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.cli import main as cli_main
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.io.headers import read_header
from MultimodalKneeRegistrationLib.io.images import load_image
from MultimodalKneeRegistrationLib.io.microct import parse_spacing, read_skyscan_log
from MultimodalKneeRegistrationLib.io.streaming import read_block_averaged
from MultimodalKneeRegistrationLib.io.tiff_tags import tiff_spacing
from MultimodalKneeRegistrationLib.steps.preprocessing import downsample
from test_streamed_reading import TINY_SLAB_MB, assert_same, check_all_factors, volume, write_dicom_series

#: A SkyScan/NRecon log shaped like the public ones (sections, keys and spellings as NRecon writes them):
#: the projection pixel in [Acquisition] differs from the reconstructed voxel in [Reconstruction].
SKYSCAN_LOG = """[System]
Scanner=SkyScan1275
Camera Pixel Size (um)=75.0
[User]
User Name=N\u00faria
[Acquisition]
Filename Prefix=knee_~00
Image Pixel Size (um)=9.900000
Scaled Image Pixel Size (um)=9.900000
[Reconstruction]
Reconstruction Program=NRecon
First Section=100
Last Section={last}
Section to Section Step={step}
Sections Count={count}
Result File Type=TIF
Result Image Width (pixels)={width}
Result Image Height (pixels)={height}
Pixel Size (um)=20.00000
[File name convention]
Filename Index Length=8
Filename Prefix=knee_rec
"""


def write_slices(folder: Path, array: np.ndarray, suffix: str = ".tif", prefix: str = "knee_rec",
                 digits: int = 8, spacing=(1.0, 1.0)) -> list:
    folder.mkdir(exist_ok=True)
    paths = []
    for k in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[k])
        image.SetSpacing(spacing)
        paths.append(folder / f"{prefix}{k + 100:0{digits}d}{suffix}")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def write_log(folder: Path, array: np.ndarray, step: int = 1, width=None) -> Path:
    nz, ny, nx = array.shape
    text = SKYSCAN_LOG.format(last=99 + nz, step=step, count=nz, width=width or nx, height=ny)
    path = folder / "knee_rec.log"
    path.write_bytes(text.encode("latin-1"))
    return path


def test_skyscan_log_gives_the_reconstructed_voxel_not_the_projection_pixel(tmp_path):
    array = volume(np.uint16, shape=(9, 10, 12))
    log = read_skyscan_log(write_log(tmp_path, array, step=2))
    assert log.pixel_size_um == 20.0 and log.section_step == 2 and log.prefix == "knee_rec"
    assert (log.width, log.height, log.sections) == (12, 10, 9)


@pytest.mark.parametrize("suffix", [".tif", ".bmp"])
def test_skyscan_folder_streams_to_the_in_memory_result(tmp_path, suffix):
    array = volume(np.uint8 if suffix == ".bmp" else np.uint16, shape=(21, 26, 29))
    folder = tmp_path / "knee_rec"
    write_slices(folder, array, suffix)
    write_log(folder, array)
    sitk.WriteImage(sitk.Image(40, 30, sitk.sitkUInt8), str(folder / "knee_rec_spr.bmp"))  # NRecon's preview
    header = read_header(folder)
    assert header.file_format == "slice-stack" and header.streamable and header.GetSize() == (29, 26, 21)
    assert header.GetSpacing() == (0.02, 0.02, 0.02) and "knee_rec.log" in header.spacing_source
    assert header.dtype == array.dtype.name  # 8-bit BMPs (read as grey RGB by ITK) stay one value per voxel
    whole = load_image(folder)
    assert np.array_equal(sitk.GetArrayViewFromImage(whole), array)
    check_all_factors(folder)


def test_section_step_sets_the_slice_spacing(tmp_path):
    array = volume(np.uint16, shape=(6, 8, 8))
    write_slices(tmp_path, array)
    write_log(tmp_path, array, step=3)
    assert read_header(tmp_path).GetSpacing() == pytest.approx((0.02, 0.02, 0.06))


def test_a_log_of_another_reconstruction_is_refused(tmp_path):
    array = volume(np.uint16, shape=(6, 8, 8))
    write_slices(tmp_path, array)
    write_log(tmp_path, array, width=1024)
    with pytest.raises(InputError, match="another reconstruction.*--spacing"):
        read_header(tmp_path)


def test_tiff_resolution_tags_give_the_voxel_size(tmp_path):
    array = volume(np.uint16, shape=(6, 8, 8))
    write_slices(tmp_path, array, spacing=(0.05, 0.05))
    header = read_header(tmp_path)
    assert header.GetSpacing() == pytest.approx((0.05, 0.05, 0.05), abs=1e-9)
    assert "TIFF resolution tags" in header.spacing_source and "cubic" in header.spacing_source
    check_all_factors(tmp_path)


def _tiff_with_imagej_description(path: Path) -> None:
    """A minimal 2x2 uint8 TIFF (TIFF 6.0 baseline, little-endian) with ImageJ's unit and slice spacing."""
    description = b"ImageJ=1.54f\nunit=micron\nspacing=5.0\n\x00"
    entries = [(256, 3, 1, 2), (257, 3, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (270, 2, len(description), 200), (273, 4, 1, 300), (277, 3, 1, 1), (278, 3, 1, 2),
               (279, 4, 1, 4), (282, 5, 1, 260), (283, 5, 1, 268), (296, 3, 1, 1)]
    data = bytearray(320)
    data[:8] = b"II" + struct.pack("<HI", 42, 8)
    data[8:10] = struct.pack("<H", len(entries))
    for i, (tag, kind, count, value) in enumerate(entries):
        data[10 + 12 * i:22 + 12 * i] = struct.pack("<HHII", tag, kind, count, value)
    data[200:200 + len(description)] = description
    data[260:276] = struct.pack("<IIII", 1, 10, 1, 10)  # 0.1 pixel per micron: 10 um pixels
    data[300:304] = bytes([1, 2, 3, 4])
    path.write_bytes(bytes(data))


def test_imagej_description_gives_pixel_and_slice_spacing(tmp_path):
    _tiff_with_imagej_description(tmp_path / "s.tif")
    spacing, how = tiff_spacing(tmp_path / "s.tif")
    assert spacing == pytest.approx((0.01, 0.01, 0.005)) and "ImageJ" in how


def test_missing_voxel_size_says_how_to_give_it(tmp_path):
    array = volume(np.uint16, shape=(6, 8, 8))
    write_slices(tmp_path, array)  # ITK writes 1 mm (25.4 dpi): a default, not a measurement
    with pytest.raises(InputError, match="voxel size .* is not known.*--spacing"):
        load_image(tmp_path, name="moving image")
    image = load_image(tmp_path, spacing=0.03)
    assert image.GetSpacing() == (0.03, 0.03, 0.03)
    assert read_header(tmp_path, spacing=(0.02, 0.02, 0.04)).GetSpacing() == (0.02, 0.02, 0.04)
    assert_same(read_block_averaged(tmp_path, (2, 2, 2), spacing=0.03, slab_mb=TINY_SLAB_MB),
                downsample(image, (2, 2, 2)))


def test_slices_of_different_sizes_are_refused_by_name(tmp_path):
    paths = write_slices(tmp_path, volume(np.uint16, shape=(5, 8, 8)), spacing=(0.05, 0.05))
    odd = sitk.Image(9, 8, sitk.sitkUInt16)
    odd.SetSpacing((0.05, 0.05))
    sitk.WriteImage(odd, str(paths[3]))
    with pytest.raises(InputError, match=f"slices .* differ: .*'{paths[3].name}' is 9x8"):
        read_header(tmp_path)


def test_two_slice_series_in_one_folder_are_refused(tmp_path):
    write_slices(tmp_path, volume(np.uint16, shape=(4, 8, 8)), prefix="scan_a", spacing=(0.05, 0.05))
    write_slices(tmp_path, volume(np.uint16, shape=(4, 8, 8)), prefix="scan_b", spacing=(0.05, 0.05))
    with pytest.raises(InputError, match="several slice series: 'scan_a"):
        load_image(tmp_path)


def test_a_dicom_folder_with_a_few_screenshots_is_still_a_dicom_series(tmp_path):
    array = volume(np.int16, shape=(8, 10, 10))
    write_dicom_series(tmp_path / "series", array)
    for k in range(2):
        sitk.WriteImage(sitk.Image(30, 20, sitk.sitkUInt8), str(tmp_path / "series" / f"screenshot{k}.png"))
    assert read_header(tmp_path / "series").file_format == "dicom-series"
    assert np.array_equal(sitk.GetArrayFromImage(load_image(tmp_path / "series")), array)


def test_slices_are_ordered_by_natural_sort_of_their_names(tmp_path):
    for k in range(12):
        image = sitk.Image(6, 5, sitk.sitkUInt16) + (k + 1)
        image.SetSpacing((0.05, 0.05))
        sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt16), str(tmp_path / f"slice{k + 1}.tif"))
    values = sitk.GetArrayFromImage(load_image(tmp_path))[:, 0, 0]
    assert list(values) == list(range(1, 13))  # slice2 before slice10


def test_colour_slices_are_refused(tmp_path):
    for k in range(3):
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[..., 0] = 200
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / f"c{k}.bmp"))
    with pytest.raises(InputError, match="colour"):
        read_header(tmp_path, spacing=0.02)


def test_spacing_is_refused_for_a_format_with_its_own(tmp_path):
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16), str(tmp_path / "v.nrrd"))
    with pytest.raises(InputError, match="stores its own"):
        load_image(tmp_path / "v.nrrd", spacing=0.02)


def test_parse_spacing_accepts_one_or_three_values():
    assert parse_spacing("0.02") == (0.02, 0.02, 0.02)
    assert parse_spacing("0.02,0.02,0.04") == (0.02, 0.02, 0.04)
    with pytest.raises(ValueError):
        parse_spacing("0.02,-1,3")


def test_cli_accepts_a_slice_folder_with_moving_spacing(tmp_path, capsys):
    fixed = sitk.GetImageFromArray(volume(np.int16, shape=(30, 32, 32)))
    fixed.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(fixed, str(tmp_path / "mr.nrrd"))
    write_slices(tmp_path / "rec", volume(np.uint16, shape=(20, 24, 24)))
    assert cli_main(["inspect", str(tmp_path / "mr.nrrd"), str(tmp_path / "rec"), "--quiet"]) == 2
    assert "--spacing" in capsys.readouterr().err
    assert cli_main(["inspect", str(tmp_path / "mr.nrrd"), str(tmp_path / "rec"), "--moving-spacing", "0.2",
                     "--quiet"]) == 0


def write_minimal_isq(path: Path, array: np.ndarray, extent_um) -> None:
    """An ISQ built from the format description (itkScancoImageIO's ReadISQHeader): a 512-byte block with
    'CTDATA-HEADER_V1', data type 3 at byte 16, voxels per axis at 44, extent in um at 56 and the data
    offset (512-byte blocks after the first) at 508; then one empty block; then int16 little-endian voxels."""
    nz, ny, nx = array.shape
    block = bytearray(512)
    block[:16] = b"CTDATA-HEADER_V1"
    block[16:20] = struct.pack("<i", 3)
    block[44:68] = struct.pack("<6i", nx, ny, nz, *extent_um)
    block[88:92] = struct.pack("<i", 4096)  # mu scaling, as scanners write it
    block[508:512] = struct.pack("<i", 1)
    path.write_bytes(bytes(block) + bytes(512) + array.astype("<i2").tobytes())


def test_isq_built_from_the_format_description_streams_without_the_extra(tmp_path):
    array = volume(np.int16, shape=(11, 13, 15))
    write_minimal_isq(tmp_path / "scan.isq", array, (15 * 30, 13 * 30, 11 * 30))
    header = read_header(tmp_path / "scan.isq")
    assert header.streamable and header.GetSpacing() == pytest.approx((0.03, 0.03, 0.03))
    truth = sitk.GetImageFromArray(array)
    truth.SetSpacing(header.GetSpacing())
    for factors in [(1, 1, 1), (2, 2, 2), (4, 3, 2)]:
        assert_same(read_block_averaged(tmp_path / "scan.isq", factors, slab_mb=TINY_SLAB_MB),
                    downsample(truth, factors))


def test_reading_a_whole_scanco_file_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    write_minimal_isq(tmp_path / "scan.isq", volume(np.int16, shape=(4, 5, 6)), (60, 50, 40))
    monkeypatch.setitem(sys.modules, "itk", None)  # as on a machine without itk-ioscanco
    with pytest.raises(InputError, match=r"itk-ioscanco.*pip install 'multimodal-knee-registration\[scanco\]'"):
        load_image(tmp_path / "scan.isq")


@pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")  # SWIG types of the itk package
def test_isq_written_by_itk_ioscanco_streams_to_its_own_reading(tmp_path):
    """itk-ioscanco can write ISQ (it needs CreationDate/ModificationDate metadata in its own format)."""
    itk = pytest.importorskip("itk", reason="the optional scanco extra (itk-ioscanco) is not installed")
    if not hasattr(itk, "ScancoImageIO"):
        pytest.skip("itk is installed without itk-ioscanco")
    array = volume(np.int16, shape=(17, 19, 23))
    image = itk.image_from_array(array)
    image.SetSpacing([0.025, 0.025, 0.025])
    metadata = image.GetMetaDataDictionary()
    metadata["CreationDate"] = metadata["ModificationDate"] = "5-JAN-2024 10:11:12.123"
    itk.imwrite(image, str(tmp_path / "scan.isq"))
    whole = load_image(tmp_path / "scan.isq")
    assert np.array_equal(sitk.GetArrayViewFromImage(whole), array)
    assert whole.GetSpacing() == pytest.approx((0.025, 0.025, 0.025))
    check_all_factors(tmp_path / "scan.isq")
