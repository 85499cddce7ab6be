"""Micro-CT slice folders: a folder of TIFF/BMP/PNG slices, with the voxel size from wherever it is.

Why: micro-CT reconstructions (Bruker SkyScan's NRecon and others) are saved as one 2D file per slice,
with no volume header: the voxel size lives in the reconstruction log ``*_rec.log`` beside them, in the
TIFF tags, or only in the user's notes. A wrong voxel size scales the whole registration, so it is
taken, in this order, from: the caller's ``spacing`` (``--spacing``), the SkyScan log, meaningful TIFF
tags; otherwise the read stops with an error saying how to give it.

SkyScan log keys (found in public examples: SlicerMorph's SkyscanReconImport module and logs of
SkyScan 1275/1278 reconstructions posted on the Slicer forum, topic 26898): section ``[Reconstruction]``
has ``Pixel Size (um)`` (the reconstructed voxel, not ``[Acquisition] Image Pixel Size (um)``, the
projection pixel), ``Section to Section Step`` (slices kept: the slice spacing is the pixel size times
it), ``Result Image Width (pixels)``/``Height`` and ``Sections Count``; ``[File name convention]`` has
``Filename Prefix``. Logs are Latin-1 (NRecon writes the Windows code page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .headers import ImageHeader, SpacingArg, numpy_dtype
from .itk_messages import QuietItk as _QuietItk
from .itk_messages import short_cause as _short_cause
from .scanco import is_scanco_file, read_scanco, read_scanco_header  # noqa: F401 (re-exported)
from .tiff_tags import tiff_spacing

SLICE_SUFFIXES = (".tif", ".tiff", ".bmp", ".png")
_PIXEL_IDS = {"uint8": sitk.sitkUInt8, "int8": sitk.sitkInt8, "uint16": sitk.sitkUInt16, "int16": sitk.sitkInt16,
              "uint32": sitk.sitkUInt32, "int32": sitk.sitkInt32, "float32": sitk.sitkFloat32,
              "float64": sitk.sitkFloat64, "uint64": sitk.sitkUInt64, "int64": sitk.sitkInt64}


def natural_key(name: str) -> list:
    """Sort key putting 'slice2' before 'slice10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _slice_groups(folder: Path) -> Dict[Tuple[str, str], List[Path]]:
    """Image files grouped by name without the trailing number and by extension: one group, one stack."""
    groups: Dict[Tuple[str, str], List[Path]] = {}
    for item in folder.iterdir():
        if item.is_file() and item.suffix.lower() in SLICE_SUFFIXES:
            groups.setdefault((re.sub(r"\d+$", "", item.stem), item.suffix.lower()), []).append(item)
    return {key: sorted(files, key=lambda p: natural_key(p.name)) for key, files in groups.items() if len(files) > 1}


def slice_files_in(folder: Path) -> bool:
    """Whether ``folder`` is a stack of 2D image files: two or more with a common name, making up at
    least half of its files (so a DICOM folder holding a couple of screenshots stays a DICOM folder)."""
    folder = Path(folder)
    slices = sum(len(files) for files in _slice_groups(folder).values())
    others = sum(1 for item in folder.iterdir() if item.is_file() and not item.name.startswith("."))
    return slices >= 2 and 2 * slices >= others


@dataclass(frozen=True)
class SkyScanLog:
    """What a SkyScan/NRecon ``*_rec.log`` says about the reconstructed slices."""

    path: Path
    pixel_size_um: Optional[float]
    section_step: int
    width: Optional[int]
    height: Optional[int]
    sections: Optional[int]
    prefix: Optional[str]


def read_skyscan_log(path: Path) -> SkyScanLog:
    """Parse a SkyScan reconstruction log (``[Section]`` lines and ``Key=Value`` lines)."""
    sections: Dict[str, Dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key.strip().lower()] = value.strip()
    rec, names = sections.get("reconstruction", {}), sections.get("file name convention", {})

    def number(text: Optional[str], kind=float):
        try:
            return kind(text) if text not in (None, "") else None
        except ValueError:
            return None

    return SkyScanLog(Path(path), number(rec.get("pixel size (um)")),
                      number(rec.get("section to section step"), int) or 1,
                      number(rec.get("result image width (pixels)"), int),
                      number(rec.get("result image height (pixels)"), int),
                      number(rec.get("sections count"), int), names.get("filename prefix") or None)


def _find_log(folder: Path, prefixes: Sequence[str]) -> Optional[SkyScanLog]:
    logs = [read_skyscan_log(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name.lower().endswith("_rec.log")]
    matching = [entry for entry in logs if entry.prefix in prefixes]
    if len(matching) == 1:
        return matching[0]
    return logs[0] if len(logs) == 1 else None


def _choose_stack(folder: Path, name: str) -> Tuple[List[Path], Optional[SkyScanLog]]:
    groups = _slice_groups(folder)
    log = _find_log(folder, [key[0] for key in groups])
    if log is not None and log.prefix is not None:
        chosen = [files for key, files in groups.items() if key[0] == log.prefix]
        if len(chosen) == 1:
            return chosen[0], log
    if len(groups) > 1:
        listing = "; ".join(f"'{k[0]}*{k[1]}' ({len(v)} files)" for k, v in sorted(groups.items()))
        raise InputError(f"{name} folder '{folder}' holds several slice series: {listing}",
                         "move the slices of one volume into a folder of their own and give that folder")
    return next(iter(groups.values())), log


def parse_spacing(text: str) -> Tuple[float, float, float]:
    """``--spacing`` values: '0.02' (cubic voxels) or '0.02,0.02,0.04' (x,y,z), in mm.

    Example:
        >>> parse_spacing("0.02,0.02,0.04")
        (0.02, 0.02, 0.04)
    """
    try:
        values = [float(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{text!r} is not a voxel size in mm like 0.02 or 0.02,0.02,0.04")
    return tuple(values)  # type: ignore[return-value]


def _slice_info(files: List[Path], name: str, folder: Path):
    """Size and pixel type of the first slice; ``InputError`` for any slice of another size or kind."""
    readers = []
    with _QuietItk():
        for path in (files[0], *files[1:]):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            try:
                reader.ReadImageInformation()
            except RuntimeError as error:
                raise InputError(f"cannot read slice '{path.name}' of {name} folder '{folder}' "
                                 f"({_short_cause(error)})", "re-export the slices") from None
            size = tuple(reader.GetSize())
            if len(size) == 3 and size[2] != 1:
                raise InputError(f"'{path.name}' in {name} folder '{folder}' is itself a 3D stack ({size[2]} pages)",
                                 "give that file instead of the folder, or export one file per slice")
            if readers and (size[:2] != readers[0][0][:2] or reader.GetPixelID() != readers[0][1]):
                raise InputError(f"the slices of {name} folder '{folder}' differ: '{files[0].name}' is "
                                 f"{'x'.join(map(str, readers[0][0][:2]))} {readers[0][2]}, '{path.name}' is "
                                 f"{'x'.join(map(str, size[:2]))} {sitk.GetPixelIDValueAsString(reader.GetPixelID())}",
                                 "remove the files that are not slices of this volume (previews, other scans)")
            readers.append((size, reader.GetPixelID(), sitk.GetPixelIDValueAsString(reader.GetPixelID()),
                            reader.GetNumberOfComponents()))
    return readers[0]


def _stack_spacing(files: List[Path], size2d, log: Optional[SkyScanLog], spacing: SpacingArg,
                   name: str, folder: Path) -> Tuple[Tuple[float, float, float], str]:
    """The voxel size and where it came from (see the module docstring for the order)."""
    if spacing is not None:
        values = parse_spacing(",".join(str(v) for v in np.atleast_1d(spacing)))
        return values, "the voxel size given by the user (--spacing)"
    if log is not None and log.pixel_size_um:
        if (log.width, log.height) not in ((None, None), tuple(size2d)):
            raise InputError(f"the SkyScan log '{log.path.name}' in {name} folder '{folder}' describes "
                             f"{log.width}x{log.height} slices, but the slices are {size2d[0]}x{size2d[1]}: it "
                             "belongs to another reconstruction", "give the voxel size with --spacing MM")
        xy = log.pixel_size_um / 1000.0
        return (xy, xy, xy * log.section_step), (f"the SkyScan log {log.path.name} (Pixel Size {log.pixel_size_um:g} um"
                                                  f", section step {log.section_step})")
    tagged = tiff_spacing(files[0])
    if tagged is not None:
        return tagged
    raise InputError(f"the voxel size of {name} folder '{folder}' is not known: there is no SkyScan "
                     "*_rec.log beside the slices and their TIFF tags state no meaningful pixel size",
                     "give it in mm with --spacing (or --fixed-spacing/--moving-spacing), e.g. --spacing 0.02, "
                     "or --spacing 0.02,0.02,0.04 when the slice spacing differs")


def read_stack_header(folder: Path, spacing: SpacingArg = None, name: str = "image") -> ImageHeader:
    """The header of a folder of 2D slices (all must share size and pixel type), voxels unread.

    The volume's origin is (0, 0, 0) and its axes are the slice axes, the file order (natural sort of
    the names: 'slice2' before 'slice10') being z.

    Example:
        >>> read_stack_header(Path("knee_rec"), name="moving image").spacing_source  # doctest: +SKIP
        'the SkyScan log knee_rec.log (Pixel Size 20 um, section step 1)'
    """
    folder = Path(folder)
    files, log = _choose_stack(folder, name)
    size2d, pixel_id, pixel_type, components = _slice_info(files, name, folder)
    if components > 1:
        pixel_id = _grey_pixel_id(files[0], pixel_id, components, name, folder)
    values, source = _stack_spacing(files, size2d[:2], log, spacing, name, folder)
    dtype = numpy_dtype(pixel_id, 1)
    return ImageHeader(
        path=str(folder), file_format="slice-stack", size=(int(size2d[0]), int(size2d[1]), len(files)),
        spacing=tuple(float(v) for v in values), origin=(0.0, 0.0, 0.0), direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
        pixel_id=pixel_id, pixel_type=sitk.GetPixelIDValueAsString(pixel_id), dtype=dtype, components=1,
        streamable=True, stream_note=f"streamed one slice at a time ({len(files)} {files[0].suffix} files)",
        spacing_source=source, layout={"files": tuple(str(f) for f in files)})


def _grey_pixel_id(path: Path, pixel_id: int, components: int, name: str, folder: Path) -> int:
    """The scalar type of a grey image stored as colour (SkyScan's 8-bit BMPs read as RGB); refuse colour."""
    with _QuietItk():
        channels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    if components not in (3, 4) or np.any(channels[..., 1:3] != channels[..., :1]):
        raise InputError(f"the slices of {name} folder '{folder}' are colour images",
                         "export the reconstruction as grey-level slices (8- or 16-bit)")
    return _PIXEL_IDS[numpy_dtype(pixel_id, components)]


def read_slice(path: str, pixel_id: int) -> np.ndarray:
    """One slice as a 2D array of ``pixel_id``'s type (grey RGB is converted by ITK's own luminance)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetOutputPixelType(pixel_id)
    with _QuietItk():
        image = reader.Execute()
    array = sitk.GetArrayFromImage(image)  # a copy: a view would outlive the image it points into
    return array.reshape(array.shape[-2:])


def read_slice_stack(header: ImageHeader, name: str = "image") -> sitk.Image:
    """The whole stack in memory, with ``header``'s geometry (what ``load_image`` returns for a slice folder)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(header.layout["files"]))
    reader.SetOutputPixelType(header.pixel_id)
    with _QuietItk():
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"cannot read the slices of {name} folder '{header.path}' ({_short_cause(error)})",
                             "check that every slice file is complete") from None
    image.SetSpacing(header.spacing)
    image.SetOrigin(header.origin)
    image.SetDirection(header.direction)
    return image
