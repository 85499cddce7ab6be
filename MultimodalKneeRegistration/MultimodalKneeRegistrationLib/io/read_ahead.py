"""Read the next slabs on a thread while the caller averages the current one (a bounded queue).

Why: reading a micro-CT one slab, then averaging it, then reading the next leaves the disk idle while
numpy works and the CPU idle while the disk works: the cold read of an 8 GB file took the plain read
time plus all the averaging time. File reads and numpy's reductions release the GIL, so one reader
thread is enough to overlap them. ``depth + 1`` slab buffers circulate (one averaged, the others
being read or waiting), so memory stays at that many slabs whatever the file's size.

Example:
    >>> reader = RawSlabReader(layout, size, size[2])  # doctest: +SKIP
    >>> for slab in read_ahead(reader, (32, ny, nx), np.uint16): averager.add(slab)  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, Protocol, Tuple

import numpy as np

#: Buffers beyond the one the consumer holds (being read, or filled and waiting).
DEFAULT_DEPTH = 2
_POLL_S = 0.05


class SlabReader(Protocol):
    """What ``read_ahead`` needs: fill a buffer's first slices, say how many (0 at the end), close."""

    def read_into(self, buffer: np.ndarray) -> int: ...

    def close(self) -> None: ...


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(reader: SlabReader, shape: Tuple[int, int, int], dtype, depth: int = DEFAULT_DEPTH
               ) -> Iterator[np.ndarray]:
    """Yield ``buffer[:n]`` slabs that ``reader`` filled on a thread; the reader is closed at the end.

    A slab is valid until the next one is asked for (its buffer goes back to the reader then). When
    the caller stops early (an exception, cancel, ``close()``), the thread finishes the read it is in,
    stops, and closes the reader before this generator returns: no thread or open file is left.
    An error in the reader is raised here, in the caller's thread.
    """
    free: queue.Queue = queue.Queue()
    for _ in range(depth + 1):
        free.put(np.empty(shape, np.dtype(dtype)))
    filled: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_fill, args=(reader, free, filled, stop), name="slab-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = filled.get()
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item.error
            buffer, count = item
            yield buffer[:count]
            free.put(buffer)
    finally:
        stop.set()
        thread.join()


def _fill(reader: SlabReader, free: queue.Queue, filled: queue.Queue, stop: threading.Event) -> None:
    """The thread: take a free buffer, fill it, queue it; until the end, an error or ``stop``."""
    try:
        while not stop.is_set():
            try:
                buffer = free.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            count = reader.read_into(buffer)
            if not count:
                filled.put(None)
                return
            filled.put((buffer, count))
    except BaseException as error:  # noqa: BLE001 (handed to the caller's thread, raised there)
        filled.put(_Failed(error))
    finally:
        reader.close()
