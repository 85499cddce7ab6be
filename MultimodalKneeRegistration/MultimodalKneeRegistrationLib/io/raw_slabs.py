"""Slabs of z slices from the voxel bytes of a file: raw, gzip or zlib, at an offset, either byte order.

Why: NRRD, MetaImage and Scanco ISQ all store the voxels as one block of bytes, x fastest, after a
header; only where that block starts and how it is compressed differ. Reading it into one reused
slab buffer, in order, never seeking back, keeps memory at one slab and works for compressed data,
which can only be read front to back.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import InputError

#: Encodings this module streams.
ENCODINGS = ("raw", "gzip", "zlib")


@dataclass(frozen=True)
class RawLayout:
    """Where and how the voxels are stored.

    ``offset`` counts bytes from the start of ``data_file`` (-1: the data are the file's last bytes);
    ``line_skip`` lines are skipped before it (NRRD). ``dtype`` carries the byte order (``'>u2'``).
    """

    data_file: str
    offset: int
    encoding: str
    dtype: str
    line_skip: int = 0

    def describe(self) -> str:
        order = {">": "big-endian", "<": "little-endian"}.get(self.dtype[:1], "")
        return f"{self.encoding} {np.dtype(self.dtype).name} {order}".strip()


class _ZlibStream:
    """``readinto`` over a zlib/deflate stream (MetaImage's CompressedData), decompressing as it goes."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, detected
        self.pending = b""

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self.pending:
                chunk = self.handle.read(1 << 20)
                if not chunk:
                    break
                self.pending = chunk
            out = self.inflater.decompress(self.pending, len(view) - filled)
            self.pending = self.inflater.unconsumed_tail
            view[filled:filled + len(out)] = out
            filled += len(out)
            if self.inflater.eof:
                break
        return filled


def _open(layout: RawLayout, total_bytes: int):
    """A file object positioned at the first voxel (the caller closes ``handle``)."""
    handle = open(layout.data_file, "rb")  # noqa: SIM115 (closed by the caller)
    _advise_sequential(handle)
    for _ in range(layout.line_skip):
        handle.readline()
    if layout.offset == -1:
        handle.seek(os.fstat(handle.fileno()).st_size - total_bytes)
    elif layout.encoding == "raw" or layout.offset > 0:
        handle.seek(layout.offset, os.SEEK_CUR if layout.line_skip else os.SEEK_SET)
    if layout.encoding == "gzip":
        return handle, gzip.GzipFile(fileobj=handle, mode="rb")
    if layout.encoding == "zlib":
        return handle, _ZlibStream(handle)
    return handle, handle


class RawSlabReader:
    """Reads the next z slices of the voxel block into a buffer the caller owns; ``close()`` when done.

    Why a class and not only a generator: the read-ahead thread (``read_ahead``) fills several
    buffers in turn, so the reader must not own the buffer.

    Example:
        >>> reader = RawSlabReader(layout, (512, 512, 400), 400)  # doctest: +SKIP
        >>> count = reader.read_into(np.empty((32, 512, 512), np.uint16))  # doctest: +SKIP
    """

    def __init__(self, layout: RawLayout, size, slices_needed: int, name: str = "image") -> None:
        nx, ny, self.nz = (int(s) for s in size)
        self.layout, self.name, self.needed, self.done = layout, name, int(slices_needed), 0
        self.slice_bytes = nx * ny * np.dtype(layout.dtype).itemsize
        self.handle, self.stream = _open(layout, self.slice_bytes * self.nz)

    def read_into(self, buffer: np.ndarray) -> int:
        """Fill ``buffer[:n]`` with the next ``n`` slices (``n <= len(buffer)``); 0 once all were read."""
        count = min(buffer.shape[0], self.needed - self.done)
        if count <= 0:
            return 0
        try:
            got = _read_exactly(self.stream, buffer[:count])
        except (OSError, EOFError, zlib.error) as error:
            raise InputError(f"cannot read {self.name} '{self.layout.data_file}' ({error})",
                             "the compressed data are damaged: re-export or re-download the file") from None
        if got < count * self.slice_bytes:
            raise InputError(f"cannot read {self.name} '{Path(self.layout.data_file)}': the file ends after "
                             f"{(self.done * self.slice_bytes + got) / 1e6:.1f} MB of voxel data "
                             f"({self.nz * self.slice_bytes / 1e6:.1f} MB expected; damaged or incomplete)",
                             "re-export or re-download the file")
        self.done += count
        return count

    def close(self) -> None:
        if self.stream is not self.handle:
            stream_close = getattr(self.stream, "close", None)
            if stream_close:
                stream_close()
        self.handle.close()


def _advise_sequential(handle) -> None:
    """Tell the kernel the file is read front to back once (a larger read-ahead window), where it listens."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass


def iter_raw_slabs(layout: RawLayout, size, slices_per_slab: int, slices_needed: int,
                   name: str = "image") -> Iterator[np.ndarray]:
    """Yield ``(n, ny, nx)`` arrays of the first ``slices_needed`` z slices, ``slices_per_slab`` at a time.

    The same buffer is reused for every slab: use each one before asking for the next.

    Example:
        >>> for slab in iter_raw_slabs(layout, (512, 512, 400), 32, 400): averager.add(slab)  # doctest: +SKIP
    """
    nx, ny, _ = (int(s) for s in size)
    buffer = np.empty((max(1, slices_per_slab), ny, nx), np.dtype(layout.dtype))
    reader = RawSlabReader(layout, size, slices_needed, name)
    try:
        while True:
            count = reader.read_into(buffer)
            if not count:
                return
            yield buffer[:count]
    finally:
        reader.close()


def _read_exactly(stream, array: np.ndarray) -> int:
    view = memoryview(array.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled
