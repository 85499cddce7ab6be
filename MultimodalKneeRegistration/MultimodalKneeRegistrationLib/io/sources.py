"""Inputs too large to hold whole: a header to plan with, block averages read as they stream past.

Why: a micro-CT of 2-16 GB cannot be read whole on a 24 GB machine, and registration never needs it
whole: the planner needs its geometry, the engine a block-averaged working image, the checks and the
QC picture a coarse preview. A ``VolumeSource`` offers exactly those, so ``register`` and ``run``
accept it wherever they accept a SimpleITK image. ``FileSource`` streams a file
(``streaming.read_block_averaged``); ``ArraySource`` averages a numpy array already in memory slab by
slab without copying it (a Slicer volume node's voxels).

Example:
    >>> microct = FileSource("knee_microct.nrrd", name="moving image")
    >>> outcome = run(mri, microct, settings)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .block_average import BlockAverager, effective_factors
from .headers import ImageHeader, PathLike, SpacingArg, numpy_dtype, read_header

#: Voxels of the preview used for the input checks, the inspection's statistics and the QC picture.
PREVIEW_VOXELS = 8_000_000
#: Slab size (MB) used when averaging an in-memory array.
ARRAY_SLAB_MB = 64


class VolumeSource:
    """A volume's geometry (``sitk.Image``'s getters) plus ``block_averaged`` and ``preview``.

    Subclasses set ``header`` (an ``ImageHeader``) and implement ``_average(factors)``.
    """

    name = "image"
    header: ImageHeader
    #: How the voxels are read, for the plan's explanation.
    note = ""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[int, int, int], sitk.Image] = {}

    def GetSize(self) -> Tuple[int, ...]:  # noqa: N802 (sitk.Image's names, on purpose)
        return self.header.size

    def GetSpacing(self) -> Tuple[float, ...]:  # noqa: N802
        return self.header.spacing

    def GetOrigin(self) -> Tuple[float, ...]:  # noqa: N802
        return self.header.origin

    def GetDirection(self) -> Tuple[float, ...]:  # noqa: N802
        return self.header.direction

    def GetDimension(self) -> int:  # noqa: N802
        return len(self.header.size)

    def GetNumberOfComponentsPerPixel(self) -> int:  # noqa: N802
        return self.header.components

    def GetPixelID(self) -> int:  # noqa: N802
        return self.header.pixel_id

    def GetPixelIDTypeAsString(self) -> str:  # noqa: N802
        return self.header.pixel_type

    def GetNumberOfPixels(self) -> int:  # noqa: N802
        return int(np.prod(self.header.size, dtype=np.int64))

    def block_averaged(self, factors: Sequence[int]) -> sitk.Image:
        """``preprocessing.downsample`` of the whole volume by ``factors`` (float32), read once per factors."""
        key = effective_factors(self.header.size, factors)
        if key not in self._cache:
            self._cache[key] = self._average(key)
        return self._cache[key]

    def preview(self, max_voxels: int = PREVIEW_VOXELS) -> sitk.Image:
        """A block-averaged copy of at most ``max_voxels`` voxels (the same factor on every axis)."""
        return self.block_averaged(preview_factors(self.header.size, max_voxels))

    def _average(self, factors: Tuple[int, int, int]) -> sitk.Image:
        raise NotImplementedError


def preview_factors(size: Sequence[int], max_voxels: int) -> Tuple[int, int, int]:
    """The smallest equal block factor that brings ``size`` to at most ``max_voxels`` voxels."""
    factor = 1
    while np.prod([max(1, s // factor) for s in size], dtype=np.float64) > max_voxels:
        factor += 1
    return (factor, factor, factor)


class FileSource(VolumeSource):
    """An image file read in slabs (``streaming.read_block_averaged``); never held whole."""

    def __init__(self, path: PathLike, series_uid: Optional[str] = None, spacing: SpacingArg = None,
                 name: str = "image", header: Optional[ImageHeader] = None) -> None:
        super().__init__()
        self.path, self.series_uid, self.spacing, self.name = path, series_uid, spacing, name
        self.header = header or read_header(path, series_uid, spacing, name)
        self.note = (f"The {name} ({self.header.nbytes / 1e9:.1f} GB) is never held whole: "
                     f"{self.header.stream_note}.")

    def _average(self, factors):
        from .streaming import read_block_averaged

        return read_block_averaged(self.path, factors, series_uid=self.series_uid, spacing=self.spacing,
                                   header=self.header, name=self.name)

    def image(self) -> sitk.Image:
        """The whole image (for the steps that need every voxel: per-bone registration)."""
        from .images import load_image

        return load_image(self.path, self.series_uid, self.name, spacing=self.spacing)


class ArraySource(VolumeSource):
    """A numpy array (z, y, x) already in memory, averaged slab by slab without a copy of it.

    Why: Slicer holds a loaded micro-CT as the node's array; a SimpleITK copy of it doubles the memory.
    ``spacing``, ``origin`` and ``direction`` are LPS, as SimpleITK stores them.
    """

    def __init__(self, array: np.ndarray, spacing, origin, direction, name: str = "image") -> None:
        super().__init__()
        if array.ndim != 3:
            raise ValueError(f"ArraySource needs a 3D array (z, y, x), got shape {array.shape}")
        self.array, self.name = array, name
        pixel = sitk.GetImageFromArray(array[:1, :1, :1]).GetPixelID()
        self.header = ImageHeader(
            path="", file_format="memory", size=tuple(int(n) for n in array.shape[::-1]),
            spacing=tuple(float(s) for s in spacing), origin=tuple(float(o) for o in origin),
            direction=tuple(float(d) for d in direction), pixel_id=pixel,
            pixel_type=sitk.GetPixelIDValueAsString(pixel), dtype=numpy_dtype(pixel), components=1,
            streamable=True, stream_note="averaged from memory slab by slab, without a copy")
        self.note = f"The {name} is averaged where it lies in memory, slab by slab, without a copy."

    def _average(self, factors):
        averager = BlockAverager(self.header.size, factors, self.array.dtype)
        per_slab = max(1, ARRAY_SLAB_MB * 1_000_000 // max(1, self.array[0].nbytes))
        for start in range(0, averager.slices_needed, per_slab):
            averager.add(self.array[start:min(start + per_slab, averager.slices_needed)])
        return averager.image(self.header.spacing, self.header.origin, self.header.direction)

    def image(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.header.spacing)
        image.SetOrigin(self.header.origin)
        image.SetDirection(self.header.direction)
        return image


def pixels(volume, max_voxels: int = PREVIEW_VOXELS) -> sitk.Image:
    """Voxel values to look at: the image itself, or a source's preview."""
    return volume.preview(max_voxels) if isinstance(volume, VolumeSource) else volume


def whole(volume) -> sitk.Image:
    """Every voxel: the image itself, or a source read whole."""
    return volume.image() if isinstance(volume, VolumeSource) else volume
