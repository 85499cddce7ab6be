"""Reading images, DICOM series and transforms; writing outputs atomically.

Why: most failed registrations reported on the Slicer forum started with an input that was not what
the user thought (a folder with two series, a 2D localiser, a 4D file) and ended in an ITK stack
dump. Every reader here either returns a usable 3D scalar image or raises ``InputError`` saying what
is wrong and what to do. Writers put a temporary file beside the target and ``os.replace`` it, so an
interrupted run never leaves a half-written output, and they never overwrite without being asked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputError
from .geometry import deformable_parts

PathLike = Union[str, "os.PathLike[str]"]
log = logging.getLogger(__name__)

#: Extensions of formats SimpleITK reads: a file named so but unreadable is damaged, not foreign.
_IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm", ".hdr", ".img")
#: Words in the class names of non-linear ITK transforms.
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


def _short_cause(error: BaseException) -> str:
    """The last meaningful line of an ITK message, without file names, addresses or class names."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    cause = lines[-1]
    cause = re.sub(r"^.*?(itk|sitk)::ERROR:\s*", "", cause)
    cause = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", cause)
    cause = re.sub(r"^\[\w+\]\s*", "", cause)
    return cause[:160]


class _QuietItk:
    """Silence ITK's warnings printed to stderr (we check the conditions ourselves)."""

    def __enter__(self) -> None:
        self._previous = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)

    def __exit__(self, *exc: Any) -> None:
        sitk.ProcessObject.SetGlobalWarningDisplay(self._previous)


def list_dicom_series(folder: PathLike) -> List[DicomSeriesInfo]:
    """All DICOM series directly inside ``folder`` (not its sub-folders), largest first.

    Example:
        >>> for s in list_dicom_series("MR_T2_dicom"): print(s.describe())
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder", "give the folder that holds the DICOM files")
    with _QuietItk():
        try:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        except RuntimeError as error:
            raise InputError(f"cannot scan DICOM folder '{folder}' ({_short_cause(error)})",
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


def _read_dicom_series(folder: Path, series_uid: Optional[str], name: str) -> sitk.Image:
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
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    with _QuietItk():
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"cannot read DICOM series {info.uid} in '{folder}' ({_short_cause(error)})",
                             "check that the files are complete; convert a compression GDCM cannot read "
                             "first (for example with gdcmconv --raw)") from None
    _check_slice_spacing(reader, image, info, folder)
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
    if len(positions) < 3 or image.GetDimension() != 3:
        return
    normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
    steps = np.diff(np.sort(np.array(positions) @ normal))
    nominal = float(np.median(steps))
    if nominal <= 1e-6 or steps.min() < 0.5 * nominal:
        raise InputError(f"DICOM series {info.uid} in '{folder}' has several slices at the same position "
                         "(it holds more than one volume: echoes, phases or time points)",
                         "split the series into single volumes (for example in Slicer's DICOM module) "
                         "and give one of them")
    if steps.max() > 1.5 * nominal:
        raise InputError(f"DICOM series {info.uid} in '{folder}' has a gap of {steps.max():.2f} mm between "
                         f"slices where {nominal:.2f} mm is expected (a slice is missing)",
                         "re-export the complete series")
    if steps.max() - steps.min() > 0.01 * nominal + 1e-3:
        log.warning("slices of DICOM series %s are unevenly spaced (%.3f to %.3f mm)", info.uid,
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


def load_image(path: PathLike, series_uid: Optional[str] = None, name: str = "image") -> sitk.Image:
    """Read a 3D scalar image from a file SimpleITK reads or from a DICOM series folder.

    ``name`` ("fixed image", "moving image") appears in error messages. A single DICOM file is
    taken as a pointer to its series: the series holding it is loaded from its folder.

    Example:
        >>> ct = load_image("CT.nrrd", name="fixed image")
        >>> mr = load_image("MR_T2_dicom/", series_uid="1.3.6.1.4.1...", name="moving image")
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{name} '{path}' does not exist", "check the path and spelling")
    if path.is_dir():
        return _check_usable(_read_dicom_series(path, series_uid, name), path, name)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _QuietItk():
        if reader.GetImageIOFromFileName(str(path)) == "":
            suffix = "".join(path.suffixes[-2:]).lower()
            if suffix.endswith(_IMAGE_SUFFIXES):  # the name promises a format the bytes do not hold
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
                             f"({_short_cause(error)})", "re-export or re-download the file") from None
    return _check_usable(image, path, name)


def read_transform(path: PathLike, name: str = "initial transform") -> sitk.Transform:
    """Read an ITK transform file (.tfm, .txt, .h5, .mat) of a 3D transform.

    Example:
        >>> t = read_transform("reference_ct_to_mr.tfm")  # fixed -> moving, LPS
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{name} '{path}' does not exist" if not path.exists() else
                         f"{name} '{path}' is a folder, not a transform file", "check the path")
    with _QuietItk():
        try:
            transform = sitk.ReadTransform(str(path))
        except RuntimeError as error:
            raise InputError(f"{name} '{path}' is not a transform file ITK can read ({_short_cause(error)})",
                             "give an ITK transform (.tfm/.txt/.h5/.mat), e.g. one saved from Slicer's "
                             "Data module or written by this tool") from None
    if transform.GetDimension() != 3:
        raise InputError(f"{name} '{path}' is a {transform.GetDimension()}D transform", "give a 3D transform")
    deformable = deformable_parts(transform)
    if deformable:
        raise InputError(f"{name} '{path}' is not rigid or affine (it holds a {', '.join(deformable)})",
                         "give a rigid or affine transform; for a deformable one, resample the moving image "
                         "with it first and register the result")
    return transform


def ensure_writable(path: PathLike, overwrite: bool = False, what: str = "output") -> Path:
    """Check that ``path`` can be written now: its folder exists (created if needed) and is
    writable, and the file is absent unless ``overwrite``. Call it before long work.

    Example:
        >>> ensure_writable("out/transform.tfm", overwrite=False)
    """
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"{what} '{path}' is a folder", "give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{what} '{path}' already exists",
                          "pass --overwrite (overwrite=True) to replace it, or choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".mkr-probe-", delete=True)
        probe.close()
    except OSError as error:
        raise OutputError(f"cannot write into folder '{folder}' ({error.strerror or error})",
                          "choose a folder you can write to, or fix its permissions") from None
    return path


def _atomic(path: PathLike, overwrite: bool, what: str, write: Callable[[Path], None]) -> Path:
    """Run ``write(temp_path)`` in a private folder beside ``path``, then move the result(s) in."""
    path = ensure_writable(path, overwrite, what)
    workdir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        temp = workdir / path.name
        try:
            write(temp)
        except RuntimeError as error:
            raise OutputError(f"cannot write {what} '{path}' ({_short_cause(error)})",
                              "check the free disk space and the file extension") from None
        except OSError as error:
            raise OutputError(f"cannot write {what} '{path}' ({error.strerror or error})",
                              "check the free disk space and the folder's permissions") from None
        # Side files first (.raw of .mhd, .img of .hdr), so the header never points at nothing.
        produced = sorted(workdir.iterdir(), key=lambda p: p.name == path.name)
        for item in produced:
            if item.name != path.name and (path.parent / item.name).exists() and not overwrite:
                raise OutputError(f"'{path.parent / item.name}' already exists", "pass --overwrite")
        for item in produced:
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path


def write_image_atomic(image: sitk.Image, path: PathLike, overwrite: bool = False,
                       compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the extension) without ever leaving half a file.

    Example:
        >>> write_image_atomic(resampled, "out/registered_moving.nrrd", overwrite=True)
    """
    def write(temp: Path) -> None:
        with _QuietItk():
            sitk.WriteImage(image, str(temp), compress and temp.suffix.lower() != ".png")

    return _atomic(path, overwrite, "image", write)


def write_transform_atomic(transform: sitk.Transform, path: PathLike, overwrite: bool = False) -> Path:
    """Write an ITK transform file (.tfm/.txt/.h5) without ever leaving half a file.

    Example:
        >>> write_transform_atomic(result.transform, "out/transform.tfm")
    """
    return _atomic(path, overwrite, "transform", lambda temp: sitk.WriteTransform(transform, str(temp)))


def _json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf as null (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return _json_ready(value.to_dict())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


#: A JSON list of numbers spread over several lines by ``indent``: kept on one line for people.
_NUMBER_LIST = re.compile(r"\[(?:\s*-?[0-9][0-9.eE+-]*\s*,)*\s*-?[0-9][0-9.eE+-]*\s*\]")


def write_json_atomic(data: Any, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``data`` as indented, strict JSON without ever leaving half a file.

    Example:
        >>> write_json_atomic({"ok": True}, "out/report.json")
    """
    text = json.dumps(_json_ready(data), indent=2, allow_nan=False) + "\n"
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text)

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return _atomic(path, overwrite, "JSON file", write)
