"""Image headers without voxels: what the planner needs, and whether the voxels can be streamed.

Why: planning (which image is fine, by how much to block-average it, which field of view is larger)
only needs size, spacing, origin and direction. Reading a 16 GB micro-CT whole just to learn them
is what made the fine image cost its full size in memory. ``read_header`` reads headers only: ITK's
``ReadImageInformation`` for files (so the geometry is exactly what ``load_image`` would give), the
first and last file of a DICOM series (as ITK's series reader computes it), a SkyScan log or TIFF tags
for slice folders, the Scanco header for ISQ/AIM.

``ImageHeader`` answers ``GetSize``/``GetSpacing``/``GetOrigin``/``GetDirection``/``GetDimension`` like
a ``sitk.Image``, so it can be passed to code that only reads geometry: ``planning.plan_registration``,
``geometry.physical_box``, ``geometry.index_to_physical_matrix``. It holds no voxels: anything that
reads intensities needs the image itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .images import IMAGE_SUFFIXES as _IMAGE_SUFFIXES
from .images import choose_dicom_series
from .itk_messages import QuietItk as _QuietItk
from .itk_messages import short_cause as _short_cause
from .metaimage_header import metaimage_layout
from .nrrd_header import nrrd_layout

PathLike = Union[str, Path]
SpacingArg = Optional[Union[float, Sequence[float]]]


@dataclass(frozen=True)
class ImageHeader:
    """Geometry and storage of an image, read without its voxels.

    ``streamable`` says whether ``streaming.read_block_averaged`` reads it slab by slab;
    ``stream_note`` says how, or why not (a sentence for the plan's explanation).
    ``spacing_source`` says where the voxel size came from (a slice folder has no header of its own).
    ``layout`` is private to the readers (raw-byte layout or slice-file list).

    Example:
        >>> header = read_header("micro_ct.nrrd")                    # doctest: +SKIP
        >>> plan = plan_registration(header, mr_header, settings)    # doctest: +SKIP
    """

    path: str
    file_format: str
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    pixel_id: int
    pixel_type: str
    dtype: str
    components: int
    streamable: bool
    stream_note: str
    spacing_source: str = "file header"
    layout: Any = field(default=None, compare=False, repr=False)

    # -- the sitk.Image geometry interface (read-only), for planning code --
    def GetSize(self) -> Tuple[int, ...]:  # noqa: N802 (sitk.Image's name, on purpose)
        return self.size

    def GetSpacing(self) -> Tuple[float, ...]:  # noqa: N802
        return self.spacing

    def GetOrigin(self) -> Tuple[float, ...]:  # noqa: N802
        return self.origin

    def GetDirection(self) -> Tuple[float, ...]:  # noqa: N802
        return self.direction

    def GetDimension(self) -> int:  # noqa: N802
        return len(self.size)

    def GetNumberOfComponentsPerPixel(self) -> int:  # noqa: N802
        return self.components

    def GetPixelID(self) -> int:  # noqa: N802
        return self.pixel_id

    def GetPixelIDTypeAsString(self) -> str:  # noqa: N802
        return self.pixel_type

    @property
    def nbytes(self) -> int:
        """Bytes of the voxels in memory (what reading the file whole would cost)."""
        return int(np.prod(self.size, dtype=np.int64)) * np.dtype(self.dtype).itemsize * max(1, self.components)

    def describe(self) -> str:
        size = "x".join(str(s) for s in self.size)
        spacing = "x".join(f"{s:.4g}" for s in self.spacing)
        return (f"{self.file_format} {size} voxels of {spacing} mm ({self.pixel_type}, "
                f"{self.nbytes / 1e9:.2f} GB; spacing from {self.spacing_source}); {self.stream_note}")


def read_header(path: PathLike, series_uid: Optional[str] = None, spacing: SpacingArg = None,
                name: str = "image") -> ImageHeader:
    """The header of a file, a DICOM series folder or a TIFF/BMP slice folder, without reading voxels.

    ``spacing`` (mm: one number or three) gives the voxel size of a slice folder that has none;
    it is refused for formats that store their own. ``name`` appears in error messages.

    Example:
        >>> read_header("CT.nrrd").GetSpacing()              # doctest: +SKIP
        (0.4, 0.4, 0.6)
        >>> read_header("rec_folder/", spacing=0.02).stream_note  # doctest: +SKIP
    """
    from .microct import is_scanco_file, read_scanco_header, read_stack_header, slice_files_in

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{name} '{path}' does not exist", "check the path and spelling")
    if path.is_dir():
        if slice_files_in(path):
            return read_stack_header(path, spacing, name)
        _refuse_spacing(spacing, name, "DICOM series")
        return _dicom_series_header(path, series_uid, name)
    if is_scanco_file(path):
        _refuse_spacing(spacing, name, "Scanco file")
        return read_scanco_header(path, name)
    header = _file_header(path, series_uid, name)
    if header.file_format != "dicom-series":
        _refuse_spacing(spacing, name, f"{header.file_format} file")
    return header


def _refuse_spacing(spacing: SpacingArg, name: str, what: str) -> None:
    if spacing is not None:
        raise InputError(f"a voxel size was given for {name}, but a {what} stores its own",
                         "give --spacing (--fixed-spacing/--moving-spacing) only for folders of TIFF/BMP slices")


def _itk_info(path: Path, name: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _QuietItk():
        if reader.GetImageIOFromFileName(str(path)) == "":
            if "".join(path.suffixes[-2:]).lower().endswith(_IMAGE_SUFFIXES):
                raise InputError(f"cannot read {name} '{path}': it is not a valid {path.suffix} file "
                                 "(damaged, incomplete, or another format renamed)",
                                 "re-export or re-download the file")
            raise InputError(f"{name} '{path}' is not an image format SimpleITK can read",
                             "give a .nrrd, .nii/.nii.gz, .mha/.mhd file, a DICOM series folder, a folder of "
                             "TIFF/BMP slices or a Scanco .isq/.aim file")
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise InputError(f"cannot read {name} '{path}': the file is damaged or incomplete "
                             f"({_short_cause(error)})", "re-export or re-download the file") from None
    return reader


def _file_header(path: Path, series_uid: Optional[str], name: str) -> ImageHeader:
    reader = _itk_info(path, name)
    io_name = reader.GetImageIOFromFileName(str(path))
    if io_name == "GDCMImageIO" and (reader.GetDimension() == 2 or min(reader.GetSize()) == 1):
        uid = series_uid or (reader.GetMetaData("0020|000e").strip() if reader.HasMetaDataKey("0020|000e") else None)
        return _dicom_series_header(path.parent, uid, name)
    header = header_from_reader(reader, str(path), _FORMATS.get(io_name, io_name.replace("ImageIO", "").lower()))
    if header.file_format in ("nrrd", "metaimage"):
        parse = nrrd_layout if header.file_format == "nrrd" else metaimage_layout
        try:
            layout, sizes, reason = parse(path)
        except (OSError, ValueError) as error:
            layout, sizes, reason = None, (), f"its header could not be parsed for streaming ({error})"
        return _with_layout(header, layout, sizes, reason)
    return replace(header, stream_note=f"{header.file_format} files are read whole (not streamed)")


_FORMATS = {"NrrdImageIO": "nrrd", "MetaImageIO": "metaimage", "NiftiImageIO": "nifti", "GDCMImageIO": "dicom"}


def header_from_reader(reader: sitk.ImageFileReader, path: str, file_format: str) -> ImageHeader:
    """An ``ImageHeader`` from a reader after ``ReadImageInformation`` (not streamable until a layout is set)."""
    pixel_id = reader.GetPixelID()
    components = reader.GetNumberOfComponents()
    return ImageHeader(
        path=path, file_format=file_format, size=tuple(reader.GetSize()), spacing=tuple(reader.GetSpacing()),
        origin=tuple(reader.GetOrigin()), direction=tuple(reader.GetDirection()), pixel_id=pixel_id,
        pixel_type=sitk.GetPixelIDValueAsString(pixel_id), dtype=numpy_dtype(pixel_id, components),
        components=components, streamable=False, stream_note="read whole")


def numpy_dtype(pixel_id: int, components: int = 1) -> str:
    """The numpy dtype name of a SimpleITK pixel type (of one component for vector types)."""
    if components > 1:
        scalar = sitk.GetPixelIDValueAsString(pixel_id).replace("vector of ", "")
        matches = [p for p in _SCALARS if sitk.GetPixelIDValueAsString(p) == scalar]
        pixel_id = matches[0] if matches else pixel_id
    return _SCALARS.get(pixel_id, "float64")


_SCALARS = {
    sitk.sitkUInt8: "uint8", sitk.sitkInt8: "int8", sitk.sitkUInt16: "uint16", sitk.sitkInt16: "int16",
    sitk.sitkUInt32: "uint32", sitk.sitkInt32: "int32", sitk.sitkUInt64: "uint64", sitk.sitkInt64: "int64",
    sitk.sitkFloat32: "float32", sitk.sitkFloat64: "float64",
}


def scalar_volume_problem(header: ImageHeader) -> str:
    """Why ``header`` is not a 3D scalar volume the streamed reader handles ('' when it is)."""
    if header.GetDimension() != 3:
        return f"it is a {header.GetDimension()}D image"
    if header.components != 1:
        return f"it has {header.components} values per voxel"
    if header.pixel_id not in _SCALARS:
        return f"its pixel type '{header.pixel_type}' is not streamed"
    return ""


def _with_layout(header: ImageHeader, layout, sizes: Tuple[int, ...], reason: str) -> ImageHeader:
    """Attach the parsed byte layout, after checking it describes the same voxels ITK reports."""
    problem = reason or scalar_volume_problem(header)
    if not problem and tuple(sizes) != tuple(header.size):
        problem = f"its header sizes {sizes} differ from ITK's {header.size}"
    if not problem and np.dtype(layout.dtype).newbyteorder("=") != np.dtype(header.dtype):
        problem = f"its voxel type {np.dtype(layout.dtype).name} differs from ITK's {header.dtype}"
    if problem:
        return replace(header, stream_note=f"read whole (not streamed: {problem})")
    return replace(header, streamable=True, layout=layout,
                   stream_note=f"streamed slab by slab ({header.file_format}, {layout.describe()})")


def _dicom_series_header(folder: Path, series_uid: Optional[str], name: str) -> ImageHeader:
    """A DICOM series' geometry as ``sitk.ImageSeriesReader`` computes it, from its first and last files.

    itkImageSeriesReader.hxx (ITK 5.4): origin, in-plane spacing and direction from the first file;
    slice spacing = |last origin - first origin| / (files - 1) (1.0 when they coincide); the third
    direction column is replaced by that vector only when ForceOrthogonalDirection is off (it is on
    by default in SimpleITK).
    """
    info = choose_dicom_series(folder, series_uid, name)
    first, last = (_itk_info(Path(f), name) for f in (info.files[0], info.files[-1]))
    header = header_from_reader(first, str(folder), "dicom-series")
    step = [b - a for a, b in zip(first.GetOrigin(), last.GetOrigin())]
    norm = math.sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2])
    count = len(info.files)
    slice_spacing = norm / (count - 1) if count > 1 and not math.isclose(norm, 0.0, abs_tol=1e-12) else 1.0
    size = tuple(header.size[:2]) + (count,)
    spacing = tuple(header.spacing[:2]) + (slice_spacing if count > 1 else header.spacing[2],)
    layout = {"files": info.files, "uid": info.uid, "folder": str(folder)}
    header = replace(header, size=size, spacing=spacing, layout=layout)
    problem = scalar_volume_problem(header)
    if problem or count < 2:
        return replace(header, stream_note=f"read whole (not streamed: {problem or 'a single slice'})")
    return replace(header, streamable=True, stream_note=f"streamed one file at a time ({count} DICOM files)")
