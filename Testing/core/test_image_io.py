"""Reading images, DICOM series (plain, compressed, several per folder) and transforms; atomic writers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.errors import InputError, OutputError
from MultimodalKneeRegistrationLib.io.atomic import write_image_atomic, write_json_atomic, write_transform_atomic
from MultimodalKneeRegistrationLib.io.images import list_dicom_series, load_image
from MultimodalKneeRegistrationLib.io.transforms import read_transform


def small_volume(size=(24, 20, 8), spacing=(0.8, 0.9, 2.0), origin=(-10.0, 5.0, 3.0)) -> sitk.Image:
    rng = np.random.default_rng(3)
    array = (rng.normal(300, 80, size[::-1]) + np.arange(size[2])[:, None, None] * 40).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, description: str,
                       compressor: str | None = None, prefix: str = "") -> list[Path]:
    """Write ``image`` as one DICOM file per slice with the tags a scanner would set."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    if compressor:
        writer.SetUseCompression(True)
        writer.SetCompressor(compressor)
    direction = image.GetDirection()
    tags = {
        "0008|0060": "MR", "0008|103e": description, "0020|000e": series_uid,
        "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
        "0020|0037": "\\".join(f"{v:.6f}" for v in direction[0:1] + direction[3:4] + direction[6:7]
                               + direction[1:2] + direction[4:5] + direction[7:8]),
        "0018|0050": str(image.GetSpacing()[2]), "0020|0011": "7",
    }
    paths = []
    for k in range(image.GetSize()[2]):
        slice_image = image[:, :, k]
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        slice_image.SetMetaData("0020|0013", str(k + 1))
        slice_image.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        path = folder / f"{prefix}{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        paths.append(path)
    return paths


def transfer_syntax(path: Path) -> str:
    """Transfer syntax UID (0002,0010) read from the file meta group (explicit VR little endian)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    offset = 132
    while offset < len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4:offset + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            length = struct.unpack_from("<I", data, offset + 8)[0]
            value_start = offset + 12
        else:
            length = struct.unpack_from("<H", data, offset + 6)[0]
            value_start = offset + 8
        if (group, element) == (0x0002, 0x0010):
            return data[value_start:value_start + length].rstrip(b"\0 ").decode()
        offset = value_start + length
    raise AssertionError("no transfer syntax tag")


def assert_same_image(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def test_real_dicom_series_matches_nrrd(porcine_dir):
    data = porcine_dir
    if not (data / "MR_T2_dicom").is_dir():
        pytest.skip(f"{data} has no MR_T2_dicom folder")
    series = list_dicom_series(data / "MR_T2_dicom")
    assert len(series) == 1 and series[0].slice_count == 94 and series[0].modality == "MR"
    assert_same_image(load_image(data / "MR_T2_dicom"), load_image(data / "MR_T2.nrrd"))


@pytest.mark.parametrize("compressor,syntax", [("JPEG2000", "1.2.840.10008.1.2.4.90"),
                                               ("JPEG", "1.2.840.10008.1.2.4.70")])
def test_compressed_dicom_series_loads(tmp_path, compressor, syntax):
    image = small_volume()
    files = write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.10", "T1", compressor)
    assert transfer_syntax(files[0]) == syntax  # really compressed (lossless syntaxes)
    plain = write_dicom_series(image, tmp_path / "plain", "1.2.826.0.1.3680043.2.1125.11", "T1")
    assert transfer_syntax(plain[0]).startswith("1.2.840.10008.1.2") and \
        transfer_syntax(plain[0]) != syntax
    assert_same_image(load_image(tmp_path / "series"), image)


def test_folder_with_two_series_lists_them_and_loads_by_uid(tmp_path):
    first, second = small_volume(), small_volume(size=(16, 16, 6), origin=(0.0, 0.0, 0.0))
    write_dicom_series(first, tmp_path, "1.2.826.0.1.3680043.2.1125.21", "T2 axial", prefix="a")
    write_dicom_series(second, tmp_path, "1.2.826.0.1.3680043.2.1125.22", "PD sagittal", prefix="b")
    with pytest.raises(InputError) as caught:
        load_image(tmp_path, name="moving image")
    message = str(caught.value)
    for text in ("2 DICOM series", "1.2.826.0.1.3680043.2.1125.21", "1.2.826.0.1.3680043.2.1125.22",
                 "T2 axial", "PD sagittal", "8 slices", "6 slices", "--series-uid", "moving image"):
        assert text in message
    assert_same_image(load_image(tmp_path, series_uid="1.2.826.0.1.3680043.2.1125.22"), second)
    with pytest.raises(InputError, match="no series with UID 9.9"):
        load_image(tmp_path, series_uid="9.9")
    # One file of a series stands for its whole series.
    assert_same_image(load_image(tmp_path / "a003.dcm"), first)


def test_series_with_a_missing_slice_is_refused(tmp_path):
    files = write_dicom_series(small_volume(), tmp_path, "1.2.826.0.1.3680043.2.1125.31", "T2")
    files[4].unlink()
    with pytest.raises(InputError, match="slice is missing"):
        load_image(tmp_path)


def test_bad_inputs_give_actionable_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist. check the path"):
        load_image(tmp_path / "nope.nrrd", name="fixed image")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no DICOM series"):
        load_image(tmp_path / "empty")
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_text("NRRD0004\nthis is not a header\n")
    with pytest.raises(InputError, match="damaged or incomplete") as caught:
        load_image(corrupt)
    assert "itk::" not in str(caught.value) and "\n" not in str(caught.value)
    truncated = tmp_path / "truncated.nrrd"
    sitk.WriteImage(small_volume(), str(tmp_path / "whole.nrrd"))
    truncated.write_bytes((tmp_path / "whole.nrrd").read_bytes()[:400])
    with pytest.raises(InputError, match="damaged or incomplete"):
        load_image(truncated)
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(InputError, match="not an image format"):
        load_image(tmp_path / "notes.xyz")


def test_wrong_dimensions_and_vector_images_are_refused(tmp_path):
    sitk.WriteImage(sitk.Image([10, 10], sitk.sitkInt16), str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError, match="is a 2D image"):
        load_image(tmp_path / "flat.nrrd")
    sitk.WriteImage(sitk.Image([6, 6, 6, 3], sitk.sitkFloat32), str(tmp_path / "time.nii.gz"))
    with pytest.raises(InputError, match="is 4D"):
        load_image(tmp_path / "time.nii.gz")
    sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkVectorFloat32, 3), str(tmp_path / "field.mha"))
    with pytest.raises(InputError, match="3 values per voxel"):
        load_image(tmp_path / "field.mha")
    sitk.WriteImage(sitk.Image([6, 6, 1], sitk.sitkInt16), str(tmp_path / "single.nrrd"))
    with pytest.raises(InputError, match="single slice"):
        load_image(tmp_path / "single.nrrd")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha", ".mhd"])
def test_image_round_trip_and_no_overwrite(tmp_path, suffix):
    image = small_volume()
    path = write_image_atomic(image, tmp_path / f"out{suffix}")
    assert_same_image(load_image(path), image)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(OutputError, match="already exists"):
        write_image_atomic(image, path)
    write_image_atomic(sitk.Cast(image * 2, sitk.sitkInt16), path, overwrite=True)
    doubled = sitk.GetArrayFromImage(load_image(path)).astype(int)
    np.testing.assert_array_equal(doubled, 2 * sitk.GetArrayFromImage(image).astype(int))


def test_transform_round_trip_and_errors(tmp_path):
    transform = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0))
    path = write_transform_atomic(transform, tmp_path / "t.tfm")
    back = read_transform(path)
    np.testing.assert_allclose(back.TransformPoint((10, 20, 30)), transform.TransformPoint((10, 20, 30)))
    with pytest.raises(OutputError, match="already exists"):
        write_transform_atomic(transform, path)
    with pytest.raises(InputError, match="does not exist"):
        read_transform(tmp_path / "missing.tfm")
    (tmp_path / "junk.tfm").write_text("this is not a transform\n")
    with pytest.raises(InputError, match="not a transform file") as caught:
        read_transform(tmp_path / "junk.tfm")
    assert "\n" not in str(caught.value)
    (tmp_path / "rough_start").write_text("#Insight Transform File V1.0\n")
    with pytest.raises(InputError, match="its name has no ending, not one of .tfm") as caught:
        read_transform(tmp_path / "rough_start")
    assert "suffix" not in str(caught.value)  # ITK's "set the suffix to an unsupported type" reads as an order


def test_json_writer_is_strict_and_atomic(tmp_path):
    data = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan")}
    path = write_json_atomic(data, tmp_path / "r.json")
    assert path.read_text() == '{\n  "a": 1.5,\n  "b": [0, 1, 2],\n  "c": null\n}\n'
    with pytest.raises(OutputError, match="already exists. pass --overwrite"):
        write_json_atomic({}, path)

    class Boom:
        def to_dict(self):
            raise KeyboardInterrupt  # an interrupted serialisation must leave nothing behind

    with pytest.raises(KeyboardInterrupt):
        write_json_atomic({"x": Boom()}, tmp_path / "half.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_interrupted_image_write_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image_atomic(small_volume(), tmp_path / "out.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_an_output_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="cannot write into folder") as caught:
        write_json_atomic({}, blocker / "report.json")
    assert str(blocker) in str(caught.value) and "choose a folder" in str(caught.value)
