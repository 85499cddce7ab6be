"""Read a large image block-averaged, slab by slab: peak memory is one slab plus the small result.

Why: registration only uses a block-averaged copy of the fine image (the planner picks the factors
from the headers), yet reading the file whole first made a 16 GB micro-CT need 16 GB of memory. Here
the file is read front to back, ``slab_mb`` at a time, and each slab is averaged into the result as it
arrives (``block_average``). The result is exactly ``preprocessing.downsample(load_image(path), f)``:
same grid, same values, bit for bit. Formats that cannot be streamed (NIfTI, AIM, exotic NRRD
encodings, data split over several files) are read whole and downsampled, as before; the header's
``stream_note`` says why, for the plan's explanation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError
from ..progress import ProgressCallback
from .block_average import BlockAverager, effective_factors
from .headers import ImageHeader, PathLike, SpacingArg, read_header
from .raw_slabs import iter_raw_slabs

log = logging.getLogger(__name__)


def read_block_averaged(
    path: PathLike,
    factors: Sequence[int],
    *,
    series_uid: Optional[str] = None,
    spacing: SpacingArg = None,
    slab_mb: float = 256,
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
    header = header or read_header(path, series_uid, spacing, name)
    factors = effective_factors(header.size, factors) if header.GetDimension() == 3 else tuple(factors)
    if not header.streamable:
        return _read_whole(path, factors, series_uid, spacing, header, name)
    averager = BlockAverager(header.size, factors, header.dtype)
    nx, ny, nz = header.size
    slice_bytes = nx * ny * np.dtype(header.dtype).itemsize
    per_slab = max(1, int(slab_mb * 1e6) // slice_bytes)
    if header.file_format == "dicom-series":
        _check_dicom_positions(header)
    for slab in _slabs(header, per_slab, averager.slices_needed, name):
        if should_cancel is not None and should_cancel():
            raise CancelledError(f"reading {name} cancelled", "nothing was written")
        averager.add(slab)
        if progress is not None:
            progress(averager.slices_done / averager.slices_needed,
                     f"reading {name}: slice {averager.slices_done} of {averager.slices_needed}")
    return averager.image(header.spacing, header.origin, header.direction)


def _read_whole(path, factors, series_uid, spacing, header: ImageHeader, name: str) -> sitk.Image:
    from ..steps.preprocessing import downsample
    from .images import load_image

    log.info("%s '%s': %s", name, Path(path).name, header.stream_note)
    return downsample(load_image(path, series_uid, name, spacing=spacing), factors)


def _slabs(header: ImageHeader, per_slab: int, needed: int, name: str) -> Iterator[np.ndarray]:
    if header.file_format in ("slice-stack", "dicom-series"):
        return _file_slabs(header, per_slab, needed)
    return iter_raw_slabs(header.layout, header.size, per_slab, needed, name)


def _file_slabs(header: ImageHeader, per_slab: int, needed: int) -> Iterator[np.ndarray]:
    """Slabs of a slice folder or DICOM series, one file read at a time into a reused buffer."""
    from .microct import read_slice

    nx, ny, _ = header.size
    buffer = np.empty((min(per_slab, needed), ny, nx), np.dtype(header.dtype))
    files = header.layout["files"]
    for start in range(0, needed, buffer.shape[0]):
        count = min(buffer.shape[0], needed - start)
        for k in range(count):
            buffer[k] = read_slice(files[start + k], header.pixel_id)
        yield buffer[:count]


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
