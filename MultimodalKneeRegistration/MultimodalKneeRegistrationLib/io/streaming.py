"""Read a large image block-averaged, slab by slab: peak memory is a few slabs plus the small result.

Why: registration only uses a block-averaged copy of the fine image (the planner picks the factors
from the headers), yet reading the file whole first made a 16 GB micro-CT need 16 GB of memory. Here
the file is read front to back, ``slab_mb`` at a time, and each slab is averaged into the result as it
arrives (``block_average``), while a thread reads the next slabs (``read_ahead``: the disk never
waits for numpy). Several factors can share one pass (``read_block_averages``). The result is
exactly ``preprocessing.downsample(load_image(path), f)``: same grid, same values, bit for bit.
Formats that cannot be streamed (NIfTI, AIM, exotic NRRD encodings, data split over several files)
are read whole and downsampled, as before; the header's ``stream_note`` says why, for the plan's
explanation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError
from ..progress import ProgressCallback
from .block_average import BlockAverager, effective_factors
from .headers import ImageHeader, PathLike, SpacingArg, read_header
from .raw_slabs import RawSlabReader
from .read_ahead import read_ahead

log = logging.getLogger(__name__)
#: Slab size (MB). Big enough that each read is one long sequential request, small enough that the
#: read-ahead's buffers (``read_ahead.DEFAULT_DEPTH + 1`` slabs) stay a small part of memory.
DEFAULT_SLAB_MB = 64


def read_block_averaged(
    path: PathLike,
    factors: Sequence[int],
    *,
    series_uid: Optional[str] = None,
    spacing: SpacingArg = None,
    slab_mb: float = DEFAULT_SLAB_MB,
    progress: Optional[ProgressCallback] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    header: Optional[ImageHeader] = None,
    name: str = "image",
) -> sitk.Image:
    """``downsample(load_image(path), factors)``, read ``slab_mb`` MB at a time (float32 result).

    ``factors`` are the planner's block sizes (x, y, z). Pass the ``header`` already read for
    planning to skip reading it again. ``progress(fraction, message)`` is called per slab;
    ``should_cancel()`` turning true raises ``CancelledError`` between slabs.

    Example:
        >>> header = read_header("micro_ct.nrrd", name="moving image")
        >>> small = read_block_averaged("micro_ct.nrrd", (8, 8, 8), header=header, name="moving image")
    """
    return read_block_averages(path, [factors], series_uid=series_uid, spacing=spacing, slab_mb=slab_mb,
                               progress=progress, should_cancel=should_cancel, header=header, name=name)[0]


def read_block_averages(
    path: PathLike,
    factor_list: Sequence[Sequence[int]],
    *,
    series_uid: Optional[str] = None,
    spacing: SpacingArg = None,
    slab_mb: float = DEFAULT_SLAB_MB,
    progress: Optional[ProgressCallback] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    header: Optional[ImageHeader] = None,
    name: str = "image",
) -> List[sitk.Image]:
    """``read_block_averaged`` for several factors at once, in ONE pass over the file (same order).

    Why: a registration needs the working image, a preview for the checks and the QC picture, and
    maybe a copy to resample; each read separately was a full pass over a multi-GB file. Every slab is
    fed to one ``BlockAverager`` per factors while the next slab is read on a thread (``read_ahead``).

    Example:
        >>> working, preview = read_block_averages("micro_ct.nrrd", [(20, 20, 20), (8, 8, 8)])  # doctest: +SKIP
    """
    header = header or read_header(path, series_uid, spacing, name)
    keys = [effective_factors(header.size, f) if header.GetDimension() == 3 else tuple(f) for f in factor_list]
    if not header.streamable:
        from ..steps.preprocessing import downsample  # here only: the streamed path stays light to import

        whole = _read_whole(path, series_uid, spacing, header, name)
        return [downsample(whole, key) for key in keys]
    averagers = [BlockAverager(header.size, key, header.dtype) for key in keys]
    needed = max(averager.slices_needed for averager in averagers)
    nx, ny, _ = header.size
    per_slab = max(1, int(slab_mb * 1e6) // (nx * ny * np.dtype(header.dtype).itemsize))
    if header.file_format == "dicom-series":
        _check_dicom_positions(header)
    done = 0
    for slab in _slabs(header, min(per_slab, needed), needed, name):
        if should_cancel is not None and should_cancel():
            raise CancelledError(f"reading the {name} cancelled", "nothing was written")
        for averager in averagers:
            averager.add(slab)
        done += slab.shape[0]
        if progress is not None:
            progress(done / needed, f"reading the {name} ({100 * done / needed:.0f} %, slice {done} of {needed})")
    return [averager.image(header.spacing, header.origin, header.direction) for averager in averagers]


def _read_whole(path, series_uid, spacing, header: ImageHeader, name: str) -> sitk.Image:
    from .images import load_image

    log.info("%s '%s': %s", name, Path(path).name, header.stream_note)
    return load_image(path, series_uid, name, spacing=spacing)


def _slabs(header: ImageHeader, per_slab: int, needed: int, name: str) -> Iterator[np.ndarray]:
    """The first ``needed`` z slices, ``per_slab`` at a time, read ahead on a thread."""
    nx, ny, _ = header.size
    if header.file_format in ("slice-stack", "dicom-series"):
        reader, dtype = _FileStackReader(header.layout["files"], header.pixel_id, needed), header.dtype
    else:  # the stored byte order: numpy sums either
        reader, dtype = RawSlabReader(header.layout, header.size, needed, name), header.layout.dtype
    return read_ahead(reader, (per_slab, ny, nx), dtype)


class _FileStackReader:
    """Slices of a slice folder or DICOM series, one file at a time (a ``read_ahead.SlabReader``)."""

    def __init__(self, files: Sequence[str], pixel_id: int, needed: int) -> None:
        self.files, self.pixel_id, self.needed, self.done = files, pixel_id, needed, 0

    def read_into(self, buffer: np.ndarray) -> int:
        from .microct import read_slice

        count = min(buffer.shape[0], self.needed - self.done)
        for k in range(max(0, count)):
            buffer[k] = read_slice(self.files[self.done + k], self.pixel_id)
        self.done += max(0, count)
        return max(0, count)

    def close(self) -> None:
        pass


def _check_dicom_positions(header: ImageHeader) -> None:
    """The slice-position check ``load_image`` does (duplicates, gaps), from the files' headers."""
    from .images import check_slice_positions

    positions = []
    for path in header.layout["files"]:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032"):
            return
        values = reader.GetMetaData("0020|0032").replace(",", "\\").split("\\")
        try:
            positions.append([float(v) for v in values[:3]])
        except ValueError:
            return
    check_slice_positions(positions, header.direction, header.layout["uid"], Path(header.layout["folder"]))
