"""The search's fast mutual-information scorer: about 1 ms a pose, in numpy.

Why: the multi-start search compares hundreds of candidate poses, so it needs a fast, overlap-aware
mutual-information score (with a mask, per bone). The one Mattes MI evaluation every report quotes
is elsewhere (``steps.metrics.mattes_value``): the scorer ranks poses, it does not report them.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import apply_matrix, index_to_physical_matrix, mask_on_grid, transform_to_matrix


class MutualInformationScorer:
    """Mutual information between a fixed (sampled) image and a moving image under a transform.

    Up to ``max_points`` fixed voxel centres (a fixed random subset, so scores are reproducible)
    are binned once; each score maps them through the transform's matrix, interpolates the moving
    image trilinearly in numpy and fills a joint histogram with ``np.bincount``: about 1 ms a pose,
    which is what lets the initial search score over a thousand poses. The score is MI times the
    fraction of points that land inside the moving image, so poses that push the images apart are
    not rewarded for the spuriously high MI of a tiny overlap.

    With ``mask`` (a binary image anywhere over ``fixed``), only fixed voxels inside it are scored:
    the per-bone registration scores each bone so.

    Example:
        >>> scorer = MutualInformationScorer(fixed_small, moving_small)  # doctest: +SKIP
        >>> scorer.score(sitk.Transform(3, sitk.sitkIdentity))  # doctest: +SKIP
    """

    def __init__(self, fixed: sitk.Image, moving: sitk.Image, bins: int = 32, max_points: int = 20_000,
                 mask: Optional[sitk.Image] = None) -> None:
        self.bins = bins
        fixed_values = sitk.GetArrayViewFromImage(fixed).ravel()
        chosen = np.arange(fixed_values.size) if mask is None else _inside(mask, fixed)
        if chosen.size > max_points:
            chosen = np.sort(np.random.default_rng(0).choice(chosen.size, max_points, replace=False))
        size = np.array(fixed.GetSize())
        index = np.stack(np.unravel_index(chosen, size[::-1])[::-1], axis=1).astype(np.float64)
        self._points = apply_matrix(index_to_physical_matrix(fixed), index)
        self._fixed_bins = _to_bins(np.asarray(fixed_values[chosen], dtype=np.float64), bins)
        self._moving = sitk.GetArrayFromImage(moving).astype(np.float32)  # (z, y, x)
        self._to_moving_index = np.linalg.inv(index_to_physical_matrix(moving))
        self._moving_range = _robust_range(self._moving)

    def explained_fraction(self, transform: sitk.Transform) -> float:
        """MI divided by the sampled image's entropy (0: unrelated, 1: one predicts the other).

        Unlike raw MI, it is comparable across image pairs, so it can serve as a confidence floor.
        """
        counts = np.bincount(self._fixed_bins, minlength=self.bins).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log(p)).sum())
        return self.score(transform) / entropy if entropy > 0 else 0.0

    def score(self, transform: sitk.Transform) -> float:
        return self.score_matrix(transform_to_matrix(transform))

    def score_matrix(self, pose: np.ndarray) -> float:
        """``score`` of the pose given as a 4x4 matrix (fixed points -> moving points)."""
        matrix = self._to_moving_index @ pose
        values, inside = trilinear(self._moving, apply_matrix(matrix, self._points))
        fraction = float(inside.mean())
        if fraction < 0.05:
            return 0.0
        lo, hi = self._moving_range
        moving_bins = np.clip(((values - lo) / (hi - lo) * self.bins).astype(np.int64), 0, self.bins - 1)
        joint = np.bincount(self._fixed_bins[inside] * self.bins + moving_bins, minlength=self.bins**2)
        return mutual_information(joint.reshape(self.bins, self.bins)) * fraction


def _inside(mask: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """Flat indices of ``grid``'s voxels whose centre lies inside ``mask`` (nearest neighbour)."""
    return np.flatnonzero(mask_on_grid(mask, grid).ravel())


def trilinear(volume: np.ndarray, index_xyz: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Values of ``volume`` (z, y, x) at continuous (x, y, z) indices, and which points are inside.

    The eight corners are gathered in one ``take`` and each weight is computed once: half the time of
    gathering and weighting corner by corner, with the same operations in the same order, so the same
    bits (the search's scores, and so its choices, do not move). The edge correlation's turned
    templates (``turned_template``) interpolate with it too.

    Example:
        >>> volume = np.arange(8, dtype=np.float32).reshape(2, 2, 2)  # value 4z + 2y + x
        >>> trilinear(volume, np.array([[0.5, 0.5, 0.5], [2.0, 0.0, 0.0]]))
        (array([3.5], dtype=float32), array([ True, False]))
    """
    nz, ny, nx = volume.shape
    x, y, z = index_xyz[:, 0], index_xyz[:, 1], index_xyz[:, 2]
    inside = (x >= 0.0) & (x <= nx - 1) & (y >= 0.0) & (y <= ny - 1) & (z >= 0.0) & (z <= nz - 1)
    p = index_xyz[inside]
    base = np.minimum(p.astype(np.int64), np.maximum(np.array([nx, ny, nz]) - 2, 0))
    t = (p - base).astype(np.float32)
    # A step to the next voxel along an axis; none along an axis one voxel thin (base is 0 there).
    dx, dy, dz = int(nx > 1), nx * int(ny > 1), nx * ny * int(nz > 1)
    first = base[:, 2] * (nx * ny) + base[:, 1] * nx + base[:, 0]
    steps = np.array([0, dx, dy, dy + dx, dz, dz + dx, dz + dy, dz + dy + dx])
    c = volume.ravel().take(first[None, :] + steps[:, None])
    tx, ty, tz = t[:, 0], t[:, 1], t[:, 2]
    ux, uy = 1 - tx, 1 - ty
    c00, c10 = c[0] * ux + c[1] * tx, c[2] * ux + c[3] * tx
    c01, c11 = c[4] * ux + c[5] * tx, c[6] * ux + c[7] * tx
    values = (c00 * uy + c10 * ty) * (1 - tz) + (c01 * uy + c11 * ty) * tz
    return values, inside


def mutual_information(joint_histogram: np.ndarray) -> float:
    """MI (nats) of a joint histogram."""
    p = joint_histogram / max(joint_histogram.sum(), 1)
    px, py = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / np.outer(px, py)[nz])).sum())


def _robust_range(array: np.ndarray) -> Tuple[float, float]:
    step = max(1, int(round((array.size / 500_000) ** (1 / 3))))
    lo, hi = np.percentile(array[::step, ::step, ::step], [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _to_bins(values: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = np.percentile(values, [0.5, 99.5])
    hi = hi if hi > lo else lo + 1.0
    return np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
