"""Block averaging slab by slab, bit-identical to ``sitk.Cast(sitk.BinShrink(image, f), sitkFloat32)``.

Why: the streamed reader must give exactly the working image the in-memory path gives, or the two
paths would register differently. ITK's ``BinShrinkImageFilter`` (itkBinShrinkImageFilter.hxx, ITK 5.4):
- accumulates each block in ``double`` (``NumericTraits<Pixel>::RealType``), z offsets outermost, then
  y, then x, starting from the block's first voxel;
- multiplies the sum by ``1.0 / n`` (a multiplication, not a division);
- writes the result into the INPUT pixel type with ``Math::Round`` for integer types, which on x86-64
  is ``RoundHalfIntegerToEven(2 * x + 0.5) >> 1`` (itkMathDetail.h; halves go up);
- keeps ``floor(size / f)`` voxels per axis (a partial block at the end is dropped), spacing ``s * f``,
  and puts the first voxel's centre at continuous index ``(f - 1) / 2`` of the input.
We repeat those operations in the same order with numpy, so the values agree bit for bit (checked for
every scalar type in Testing/core/test_streamed_reading.py). One known difference: ITK's 32-bit rounding
overflows for ``uint32`` means at or above 2**30 (the in-memory path then returns 3221225472); we give
the true mean there.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk


def effective_factors(size: Sequence[int], factors: Sequence[int]) -> Tuple[int, int, int]:
    """The factors ``preprocessing.downsample`` really applies: clipped to the size when any exceeds 1.

    Example:
        >>> effective_factors((100, 100, 3), (4, 4, 4))
        (4, 4, 3)
    """
    factors = [int(f) for f in factors]
    if len(factors) != 3 or any(f < 1 for f in factors):
        raise ValueError(f"block factors must be three whole numbers >= 1, got {tuple(factors)}")
    if any(f > 1 for f in factors):
        factors = [min(f, int(s)) for f, s in zip(factors, size)]
    return tuple(factors)  # type: ignore[return-value]


def shrunk_geometry(size, spacing, origin, direction, factors) -> dict:
    """Size, spacing and origin of the block-averaged grid, computed by ITK itself on a 1-voxel probe.

    The probe makes ITK do the index-to-physical arithmetic in its own order, so the origin matches
    ``BinShrink``'s to the last bit, for oblique and mirrored (negative determinant) grids alike.
    """
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetSpacing([float(s) for s in spacing])
    probe.SetOrigin([float(o) for o in origin])
    probe.SetDirection([float(d) for d in direction])
    first_centre = [0.5 * (f - 1) for f in factors]
    return {
        "size": tuple(int(s) // int(f) for s, f in zip(size, factors)),
        "spacing": tuple(float(s) * int(f) for s, f in zip(spacing, factors)),
        "origin": probe.TransformContinuousIndexToPhysicalPoint(first_centre),
        "direction": tuple(float(d) for d in direction),
    }


class BlockAverager:
    """Feed slabs of consecutive z slices (any number at a time, in order); collect the averaged image.

    A slab may end inside a block: the block's running sum is kept until its last slice arrives, so
    the slab size only bounds memory and never changes the result.

    Example:
        >>> averager = BlockAverager((64, 64, 40), (4, 4, 4), np.uint16)
        >>> for slab in slabs: averager.add(slab)           # doctest: +SKIP
        >>> small = averager.image(spacing, origin, direction)  # doctest: +SKIP
    """

    def __init__(self, size: Sequence[int], factors: Sequence[int], dtype) -> None:
        self.size = tuple(int(s) for s in size)
        self.factors = effective_factors(self.size, factors)
        self.dtype = np.dtype(dtype)
        fx, fy, fz = self.factors
        self.out_shape = (self.size[2] // fz, self.size[1] // fy, self.size[0] // fx)
        if min(self.out_shape) < 1:
            raise ValueError(f"image of size {self.size} is smaller than one block {self.factors}")
        self.output = np.empty(self.out_shape, np.float32)
        self.slices_needed = self.out_shape[0] * fz
        self.slices_done = 0
        self._partial = None  # running sum of the block being filled, shape (1, oy, ox)
        self._exact_sum = _exact_sum_dtype(self.dtype, int(np.prod(self.factors)))

    @property
    def done(self) -> bool:
        return self.slices_done >= self.slices_needed

    def add(self, slab: np.ndarray) -> None:
        """Add the next ``slab`` (shape ``(n, ny, nx)``, stored dtype); slices past the last block are ignored."""
        fz = self.factors[2]
        start = 0
        count = min(slab.shape[0], self.slices_needed - self.slices_done)
        if self.factors == (1, 1, 1):  # downsample() skips BinShrink: a plain cast of the stored values
            self.output[self.slices_done:self.slices_done + count] = slab[:count]
            self.slices_done += count
            return
        while start < count:
            within = self.slices_done % fz
            block = self.slices_done // fz
            if within == 0 and count - start >= fz:
                whole = (count - start) // fz
                part = slab[start:start + whole * fz]
                self.output[block:block + whole] = self._finish(self._accumulate(part, whole, None))
                taken = whole * fz
            else:
                taken = min(fz - within, count - start)
                if within == 0:
                    self._partial = None
                self._partial = self._accumulate(slab[start:start + taken], 1, self._partial)
                if within + taken == fz:
                    self.output[block] = self._finish(self._partial)[0]
                    self._partial = None
            start += taken
            self.slices_done += taken

    def _accumulate(self, part: np.ndarray, blocks: int, acc):
        """Sum ``part`` (``blocks`` z-blocks, each of ``part.shape[0] / blocks`` slices) in ITK's order."""
        fx, fy, _ = self.factors
        _, oy, ox = self.out_shape
        depth = part.shape[0] // blocks
        if self._exact_sum is not None:
            return self._accumulate_exact(part[:, :oy * fy, :ox * fx], blocks, depth, acc)
        if acc is None:
            acc = np.zeros((blocks, oy, ox), np.float64)
        for dz in range(depth):  # strided views: no copy of the slab, even when the size is not a multiple
            for dy in range(fy):
                for dx in range(fx):
                    acc += part[dz::depth, dy:oy * fy:fy, dx:ox * fx:fx]
        return acc

    def _accumulate_exact(self, part: np.ndarray, blocks: int, depth: int, acc):
        """Integer voxels: sum z, then y, then x in whole integers (about twice as fast as the strided sums).

        Exact: every partial sum stays below 2**53 (``_exact_sum_dtype``), so ITK's double sum of the
        same integers, in any order, is this integer, and ``_finish`` sees the same float64 value.
        """
        fx, fy, _ = self.factors
        _, oy, ox = self.out_shape
        sums = np.add.reduce(part.reshape(blocks, depth, oy * fy, ox * fx), axis=1, dtype=self._exact_sum)
        sums = np.add.reduce(sums.reshape(blocks, oy, fy, ox * fx), axis=2)
        sums = np.add.reduce(sums.reshape(blocks, oy, ox, fx), axis=3)
        return sums if acc is None else acc + sums

    def _finish(self, acc: np.ndarray) -> np.ndarray:
        mean = acc * (1.0 / float(np.prod(self.factors)))
        if self.dtype.kind in "iu":
            mean = np.floor(np.rint(mean * 2.0 + 0.5) * 0.5)
        return mean.astype(self.dtype).astype(np.float32)

    def image(self, spacing, origin, direction) -> sitk.Image:
        """The averaged image with the geometry ``BinShrink`` gives ``spacing``/``origin``/``direction``."""
        if not self.done:
            raise RuntimeError(f"only {self.slices_done} of {self.slices_needed} slices were added")
        geometry = shrunk_geometry(self.size, spacing, origin, direction, self.factors)
        image = sitk.GetImageFromArray(self.output)
        image.SetSpacing(geometry["spacing"])
        image.SetOrigin(geometry["origin"])
        image.SetDirection(geometry["direction"])
        return image


def _exact_sum_dtype(dtype: np.dtype, voxels_per_block: int):
    """The integer type that sums a block of ``dtype`` voxels exactly in float64's range, or None.

    None for floating voxels (their double sum depends on the order: the strided path keeps ITK's)
    and for 64-bit integers (whose sums can pass 2**53, where ITK's double sum rounds).
    """
    if dtype.kind not in "iu" or dtype.itemsize > 4:
        return None
    info = np.iinfo(dtype)
    largest = voxels_per_block * max(abs(int(info.min)), int(info.max))
    if largest < 2 ** 31:
        return np.int32
    return np.int64 if largest < 2 ** 53 else None
