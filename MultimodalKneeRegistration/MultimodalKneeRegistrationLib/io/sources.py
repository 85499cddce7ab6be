"""Inputs too large to hold whole: a header to plan with, block averages read as they stream past.

Why: a micro-CT of 2-16 GB cannot be read whole on a 24 GB machine, and registration never needs it
whole: the planner needs its geometry, the engine a block-averaged working image, the checks and the
QC picture a coarse preview. A ``VolumeSource`` offers exactly those, so ``register`` and ``run``
accept it wherever they accept a SimpleITK image. ``FileSource`` streams a file
(``streaming.read_block_averages``); ``ArraySource`` averages a numpy array already in memory slab by
slab without copying it (a Slicer volume node's voxels). Each pass over the voxels computes every
block average asked for at once (``block_averages``) and is recorded in ``reads``; a run asks for all
it needs up front (``steps.reading``), so a micro-CT is read once per run.

Example:
    >>> microct = FileSource("knee_microct.nrrd", name="moving image")
    >>> outcome = run(mri, microct, settings)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .block_average import BlockAverager, effective_factors
from .headers import ImageHeader, PathLike, SpacingArg, numpy_dtype, read_header

if TYPE_CHECKING:
    from ..progress import Progress

#: Voxels of the preview used for the input checks, the inspection's statistics and the QC picture.
PREVIEW_VOXELS = 8_000_000
#: Slab size (MB) used when averaging an in-memory array.
ARRAY_SLAB_MB = 64


@dataclass(frozen=True)
class ReadRecord:
    """One pass over a source's voxels: the factors it averaged, its seconds and the bytes it read."""

    factors: Tuple[Tuple[int, int, int], ...]
    seconds: float
    bytes: int


class VolumeSource:
    """A volume's geometry (``sitk.Image``'s getters) plus ``block_averaged`` and ``preview``.

    Subclasses set ``header`` (an ``ImageHeader``) and implement ``_average_many(keys, progress)``: one
    pass over the voxels that returns the block averages for every factors in ``keys``.
    """

    name = "image"
    header: ImageHeader
    #: How the voxels are read, for the plan's explanation.
    note = ""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[int, int, int], sitk.Image] = {}
        #: One entry per pass over the voxels: what it computed, how long it took, how many bytes.
        self.reads: List[ReadRecord] = []

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
        return self.block_averages([factors])[0]

    def block_averages(self, factor_list: Sequence[Sequence[int]], progress: Optional[Progress] = None
                       ) -> List[sitk.Image]:
        """``block_averaged`` for each factors; those not computed yet come from ONE pass over the voxels.

        ``progress`` (a ``Progress``) hears "reading the <name> (x %)" and can cancel between slabs.

        Example:
            >>> working, preview = source.block_averages([(20, 20, 20), (8, 8, 8)], progress)  # doctest: +SKIP
        """
        keys = [effective_factors(self.header.size, f) for f in factor_list]
        missing = self.missing(keys)
        if missing:
            began = time.perf_counter()
            for key, image in zip(missing, self._average_many(missing, progress)):
                self._cache[key] = image
            self.reads.append(ReadRecord(tuple(missing), time.perf_counter() - began, self._pass_bytes(missing)))
        return [self._cache[key] for key in keys]

    def missing(self, factor_list: Sequence[Sequence[int]]) -> List[Tuple[int, int, int]]:
        """The factors among ``factor_list`` not read yet (what ``block_averages`` would read)."""
        keys = [effective_factors(self.header.size, f) for f in factor_list]
        return list(dict.fromkeys(key for key in keys if key not in self._cache))

    def preview(self, max_voxels: int = PREVIEW_VOXELS) -> sitk.Image:
        """A block-averaged copy of at most ``max_voxels`` voxels (the same factor on every axis)."""
        return self.block_averaged(preview_factors(self.header.size, max_voxels))

    def _pass_bytes(self, keys) -> int:
        """Bytes of voxels one pass for ``keys`` reads: up to the last slice the deepest blocks need."""
        nz = self.header.size[2]
        slices = max((nz // key[2]) * key[2] for key in keys)
        return int(self.header.nbytes * slices / max(nz, 1))

    def _average_many(self, keys: List[Tuple[int, int, int]], progress: Optional[Progress]) -> List[sitk.Image]:
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
                 name: str = "image", header: Optional[ImageHeader] = None, slab_mb: Optional[float] = None) -> None:
        super().__init__()
        self.path, self.series_uid, self.spacing, self.name = path, series_uid, spacing, name
        self.slab_mb = slab_mb
        self.header = header or read_header(path, series_uid, spacing, name)
        self.note = (f"The {name} ({self.header.nbytes / 1e9:.1f} GB) is never held whole: "
                     f"{self.header.stream_note}.")

    def _average_many(self, keys, progress):
        from .streaming import DEFAULT_SLAB_MB, read_block_averages

        return read_block_averages(
            self.path, keys, series_uid=self.series_uid, spacing=self.spacing, header=self.header, name=self.name,
            slab_mb=self.slab_mb or DEFAULT_SLAB_MB, progress=progress.report if progress is not None else None,
            should_cancel=(lambda: progress.cancelled) if progress is not None else None)

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

    def _average_many(self, keys, progress):
        averagers = [BlockAverager(self.header.size, key, self.array.dtype) for key in keys]
        needed = max(averager.slices_needed for averager in averagers)
        per_slab = max(1, ARRAY_SLAB_MB * 1_000_000 // max(1, self.array[0].nbytes))
        for start in range(0, needed, per_slab):
            if progress is not None:
                progress.check_cancel(f"while averaging the {self.name}")
            for averager in averagers:
                averager.add(self.array[start:min(start + per_slab, needed)])
            if progress is not None:
                progress.report(min(start + per_slab, needed) / needed, f"averaging the {self.name}")
        return [averager.image(self.header.spacing, self.header.origin, self.header.direction)
                for averager in averagers]

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
