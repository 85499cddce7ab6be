"""Scanco micro-CT files (.isq, .aim) through the optional ``itk-ioscanco`` package.

Why: Scanco scanners write ISQ (raw int16 slices after a header of 512-byte blocks) and AIM
(processed volumes, variable header, sometimes run-length compressed). ``itk-ioscanco`` (the ITK
module maintained by Kitware) reads both, so we use it for the geometry and for reading whole; it
is an optional extra (``pip install multimodal-knee-registration[scanco]``), since it brings the full
ITK Python package. ISQ, the format of the large raw scans, needs no extra to be STREAMED: its first
512-byte block holds sizes, extent and the data offset at fixed places, and its voxels are plain
little-endian int16 after the header blocks, so we parse that block ourselves (the same rules as
itkScancoImageIO's ReadISQHeader) and stream it like a raw NRRD. Reading whole (``load_image``) and
AIM files use itk-ioscanco. itk-ioscanco 1.0.x returns the stored int16 values (no HU rescaling);
the equality test in Testing/core/test_microct_formats.py would catch a version that rescales.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .headers import ImageHeader
from .raw_slabs import RawLayout

SCANCO_SUFFIXES = (".isq", ".aim", ".rsq")
_ISQ_MAGIC = b"CTDATA-HEADER_V1"
_ITK_TYPES = {"unsigned_char": "uint8", "char": "int8", "unsigned_short": "uint16", "short": "int16",
              "unsigned_int": "uint32", "int": "int32", "float": "float32", "double": "float64"}
_SITK_IDS = {"uint8": sitk.sitkUInt8, "int8": sitk.sitkInt8, "uint16": sitk.sitkUInt16, "int16": sitk.sitkInt16,
             "uint32": sitk.sitkUInt32, "int32": sitk.sitkInt32, "float32": sitk.sitkFloat32,
             "float64": sitk.sitkFloat64}


def is_scanco_file(path: Path) -> bool:
    return Path(path).suffix.lower() in SCANCO_SUFFIXES


def _itk(name: str, path: Path):
    try:
        import itk  # noqa: PLC0415 (optional and slow to import: only when a Scanco file is given)

        itk.ScancoImageIO  # noqa: B018 (raises AttributeError without the itk-ioscanco module)
    except (ImportError, AttributeError):
        raise InputError(f"{name} '{path}' is a Scanco file, and reading it needs the optional package itk-ioscanco",
                         "install it with: pip install 'multimodal-knee-registration[scanco]' "
                         "(or pip install itk-ioscanco), or convert the file to NRRD first") from None
    return itk


def read_scanco_header(path: Path, name: str = "image") -> ImageHeader:
    """ISQ: our own parse of the first 512-byte block (no extra needed), streamable; AIM: itk-ioscanco's.

    ISQ fields (little-endian int32, as itkScancoImageIO's ReadISQHeader reads them): data type at 16,
    voxels per axis at 44/48/52, extent in um at 56/60/64, data offset (in 512-byte blocks after the
    first) at 508. Spacing = extent * 1e-3 / voxels (mm), origin 0, axes = identity, as ITK gives them.
    """
    with open(path, "rb") as handle:
        block = handle.read(512)
    if block[:16] == _ISQ_MAGIC and len(block) == 512:
        return _isq_header(Path(path), block, name)
    return _itk_header(Path(path), name)


def _isq_header(path: Path, block: bytes, name: str) -> ImageHeader:
    fields = np.frombuffer(block, "<i4")
    data_type, voxels, extent_um = int(fields[4]), [int(v) for v in fields[11:14]], [int(v) for v in fields[14:17]]
    if data_type == 9 or extent_um[2] == 0 or min(voxels) < 1:
        return _itk_header(path, name)  # a RAD (2D radiograph) file or a damaged header: ITK decides
    start = (int(fields[127]) + 1) * 512
    header = ImageHeader(
        path=str(path), file_format="scanco-isq", size=tuple(voxels),
        spacing=tuple(e * 1e-3 / v for e, v in zip(extent_um, voxels)), origin=(0.0, 0.0, 0.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), pixel_id=sitk.sitkInt16,
        pixel_type=sitk.GetPixelIDValueAsString(sitk.sitkInt16), dtype="int16", components=1,
        streamable=True, stream_note="streamed slab by slab (ISQ, raw int16 little-endian)",
        layout=RawLayout(str(path), start, "raw", "<i2"))
    if os.path.getsize(path) < start + header.nbytes:
        raise InputError(f"{name} '{path}' is shorter than its ISQ header says ({os.path.getsize(path)} bytes, "
                         f"{start + header.nbytes} expected): it is damaged or incomplete",
                         "copy the complete file from the scanner again")
    return header


def _itk_header(path: Path, name: str) -> ImageHeader:
    itk = _itk(name, path)
    io = itk.ScancoImageIO.New()
    io.SetFileName(str(path))
    try:
        io.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"cannot read {name} '{path}' as a Scanco file ({str(error).strip().splitlines()[-1]})",
                         "check that the file is a complete ISQ or AIM file") from None
    dtype = _ITK_TYPES.get(io.GetComponentTypeAsString(io.GetComponentType()), "float64")
    columns = np.array([[float(v) for v in io.GetDirection(i)] for i in range(3)])
    pixel_id = _SITK_IDS.get(dtype, sitk.sitkFloat64)
    return ImageHeader(
        path=str(path), file_format="scanco-aim", size=tuple(int(io.GetDimensions(i)) for i in range(3)),
        spacing=tuple(float(io.GetSpacing(i)) for i in range(3)),
        origin=tuple(float(io.GetOrigin(i)) for i in range(3)), direction=tuple(columns.T.ravel()),
        pixel_id=pixel_id, pixel_type=sitk.GetPixelIDValueAsString(pixel_id), dtype=dtype,
        components=int(io.GetNumberOfComponents()), streamable=False,
        stream_note="read whole (AIM files are not streamed: variable header, sometimes compressed)")


def read_scanco(path: Path, name: str = "image") -> sitk.Image:
    """The whole Scanco volume as a ``sitk.Image`` (what ``load_image`` returns for .isq/.aim)."""
    header = read_scanco_header(path, name)
    itk = _itk(name, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            volume = itk.imread(str(path))
        except RuntimeError as error:
            raise InputError(f"cannot read {name} '{path}' ({str(error).strip().splitlines()[-1]})",
                             "check that the file is complete") from None
        image = sitk.GetImageFromArray(itk.array_view_from_image(volume))
    del volume
    image.SetSpacing(header.spacing)
    image.SetOrigin(header.origin)
    image.SetDirection(header.direction)
    return image
