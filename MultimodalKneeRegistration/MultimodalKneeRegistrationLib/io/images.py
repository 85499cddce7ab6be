"""Reading images and DICOM series: a usable 3D scalar image, or ``InputError`` saying what to do.

Why: most failed registrations reported on the Slicer forum started with an input that was not what
the user thought (a folder with two series, a 2D localiser, a 4D file) and ended in an ITK stack
dump. Every reader here either returns a usable 3D scalar image or raises ``InputError`` saying what
is wrong and what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .atomic import PathLike
from .itk_messages import QuietItk, short_cause

log = logging.getLogger(__name__)
#: The metadata key under which a DICOM series' UID travels with its image (for the report).
SERIES_UID_KEY = "0020|000e"

#: Extensions of formats SimpleITK reads: a file named so but unreadable is damaged, not foreign.
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm", ".hdr", ".img")
#: DICOM tags ``list-series`` shows.
_DICOM_TAGS = {"description": "0008|103e", "modality": "0008|0060", "series_number": "0020|0011"}


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One series found in a DICOM folder (what ``list-series`` prints)."""

    uid: str
    description: str
    modality: str
    series_number: str
    slice_count: int
    files: tuple

    def describe(self) -> str:
        return (f"{self.uid}  {self.modality or '?'}  series {self.series_number or '?'}  "
                f"{self.slice_count} slices  '{self.description}'")


def list_dicom_series(folder: PathLike) -> List[DicomSeriesInfo]:
    """All DICOM series directly inside ``folder`` (not its sub-folders), largest first.

    Example:
        >>> for s in list_dicom_series("MR_T2_dicom"): print(s.describe())
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder", "give the folder that holds the DICOM files")
    with QuietItk():
        try:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        except RuntimeError as error:
            raise InputError(f"cannot scan DICOM folder '{folder}' ({short_cause(error)})",
                             "check that the folder is readable") from None
        series = []
        for uid in uids:
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
            tags = {key: "" for key in _DICOM_TAGS}
            if files:
                reader = sitk.ImageFileReader()
                reader.SetFileName(files[0])
                try:
                    reader.ReadImageInformation()
                    for key, tag in _DICOM_TAGS.items():
                        if reader.HasMetaDataKey(tag):
                            tags[key] = reader.GetMetaData(tag).strip()
                except RuntimeError:
                    pass
            series.append(DicomSeriesInfo(uid, tags["description"], tags["modality"],
                                          tags["series_number"], len(files), files))
    return sorted(series, key=lambda s: -s.slice_count)


def _series_listing(series: List[DicomSeriesInfo]) -> str:
    return "; ".join(s.describe() for s in series)


def choose_dicom_series(folder: Path, series_uid: Optional[str], name: str) -> DicomSeriesInfo:
    """The one series of ``folder`` to read (``series_uid``'s, or the only one); ``InputError`` otherwise."""
    series = list_dicom_series(folder)
    if not series:
        raise InputError(f"{name} folder '{folder}' holds no DICOM series",
                         "give a folder of DICOM files, or an image file (.nrrd, .nii.gz, .mha)")
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid.strip()]
        if not chosen:
            raise InputError(f"{name} folder '{folder}' has no series with UID {series_uid}; it holds: "
                             f"{_series_listing(series)}", "pass one of these UIDs with --series-uid")
        info = chosen[0]
    elif len(series) > 1:
        raise InputError(f"{name} folder '{folder}' holds {len(series)} DICOM series: "
                         f"{_series_listing(series)}",
                         "pass the UID of the one to use with --series-uid (or --fixed-series-uid / "
                         "--moving-series-uid)")
    else:
        info = series[0]
    return info


def _read_dicom_series(folder: Path, series_uid: Optional[str], name: str) -> sitk.Image:
    info = choose_dicom_series(folder, series_uid, name)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    with QuietItk():
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"cannot read DICOM series {info.uid} in '{folder}' ({short_cause(error)})",
                             "check that the files are complete; convert a compression GDCM cannot read "
                             "first (for example with gdcmconv --raw)") from None
    _check_slice_spacing(reader, image, info, folder)
    image.SetMetaData(SERIES_UID_KEY, info.uid)
    return image


def _check_slice_spacing(reader: sitk.ImageSeriesReader, image: sitk.Image, info: DicomSeriesInfo,
                         folder: Path) -> None:
    """Refuse series with duplicated or missing slices: ITK would silently average their spacing."""
    positions = []
    for index in range(len(info.files)):
        if reader.HasMetaDataKey(index, "0020|0032"):
            values = reader.GetMetaData(index, "0020|0032").replace(",", "\\").split("\\")
            try:
                positions.append([float(v) for v in values[:3]])
            except ValueError:
                return
    if image.GetDimension() == 3:
        check_slice_positions(positions, image.GetDirection(), info.uid, folder)


def check_slice_positions(positions: List[List[float]], direction, uid: str, folder: Path) -> None:
    """Refuse duplicated or missing slices from their ImagePositionPatient values, in file order."""
    if len(positions) < 3:
        return
    normal = np.array(direction).reshape(3, 3)[:, 2]
    steps = np.diff(np.sort(np.array(positions) @ normal))
    nominal = float(np.median(steps))
    if nominal <= 1e-6 or steps.min() < 0.5 * nominal:
        raise InputError(f"DICOM series {uid} in '{folder}' has several slices at the same position "
                         "(it holds more than one volume: echoes, phases or time points)",
                         "split the series into single volumes (for example in Slicer's DICOM module) "
                         "and give one of them")
    if steps.max() > 1.5 * nominal:
        raise InputError(f"DICOM series {uid} in '{folder}' has a gap of {steps.max():.2f} mm between "
                         f"slices where {nominal:.2f} mm is expected (a slice is missing)",
                         "re-export the complete series")
    if steps.max() - steps.min() > 0.01 * nominal + 1e-3:
        log.warning("slices of DICOM series %s are unevenly spaced (%.3f to %.3f mm)", uid,
                    steps.min(), steps.max())


def _check_usable(image: sitk.Image, path: Path, name: str) -> sitk.Image:
    dimension = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} '{path}' has {image.GetNumberOfComponentsPerPixel()} values per voxel "
                         "(a colour, vector or tensor image)",
                         "give a scalar (grayscale) 3D image; convert colour images to one channel first")
    if dimension == 4:
        raise InputError(f"{name} '{path}' is 4D (size {image.GetSize()}): a time series or several volumes",
                         "extract the one 3D volume to register (for example with Slicer's Sequences module)")
    if dimension != 3:
        raise InputError(f"{name} '{path}' is a {dimension}D image",
                         "give a 3D volume or a DICOM series folder")
    if min(image.GetSize()) < 2:
        raise InputError(f"{name} '{path}' is a single slice (size {image.GetSize()})",
                         "give the whole 3D volume; for DICOM give the folder, not one file")
    return image


def load_image(path: PathLike, series_uid: Optional[str] = None, name: str = "image",
               spacing=None) -> sitk.Image:
    """Read a 3D scalar image from a file SimpleITK reads, a DICOM series folder, a folder of
    TIFF/BMP slices (micro-CT) or a Scanco .isq/.aim file (.aim with the ``scanco`` extra).

    ``name`` ("fixed image", "moving image") appears in error messages. A single DICOM file is
    taken as a pointer to its series: the series holding it is loaded from its folder. ``spacing``
    (mm, one number or three) is the voxel size of a slice folder without a SkyScan log or TIFF tags.

    Example:
        >>> ct = load_image("CT.nrrd", name="fixed image")
        >>> mr = load_image("MR_T2_dicom/", series_uid="1.3.6.1.4.1...", name="moving image")
        >>> micro_ct = load_image("knee_rec/", spacing=0.02, name="moving image")
    """
    from . import headers, microct

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{name} '{path}' does not exist", "check the path and spelling")
    if (path.is_dir() and microct.slice_files_in(path)) or microct.is_scanco_file(path) or spacing is not None:
        header = headers.read_header(path, series_uid, spacing, name)
        if header.file_format == "slice-stack":
            return _check_usable(microct.read_slice_stack(header, name), path, name)
        return _check_usable(microct.read_scanco(path, name), path, name)
    if path.is_dir():
        return _check_usable(_read_dicom_series(path, series_uid, name), path, name)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with QuietItk():
        if reader.GetImageIOFromFileName(str(path)) == "":
            suffix = "".join(path.suffixes[-2:]).lower()
            if suffix.endswith(IMAGE_SUFFIXES):  # the name promises a format the bytes do not hold
                raise InputError(f"cannot read {name} '{path}': it is not a valid {path.suffix} file "
                                 "(damaged, incomplete, or another format renamed)",
                                 "re-export or re-download the file") from None
            raise InputError(f"{name} '{path}' is not an image format SimpleITK can read",
                             "give a .nrrd, .nii/.nii.gz, .mha/.mhd file or a DICOM series folder")
        try:
            reader.ReadImageInformation()
            is_dicom = reader.GetImageIOFromFileName(str(path)) == "GDCMImageIO"
            if is_dicom and (reader.GetDimension() == 2 or min(reader.GetSize()) == 1):
                uid = series_uid or (reader.GetMetaData("0020|000e").strip()
                                     if reader.HasMetaDataKey("0020|000e") else None)
                return _check_usable(_read_dicom_series(path.parent, uid, name), path.parent, name)
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"cannot read {name} '{path}': the file is damaged or incomplete "
                             f"({short_cause(error)})", "re-export or re-download the file") from None
    return _check_usable(image, path, name)


