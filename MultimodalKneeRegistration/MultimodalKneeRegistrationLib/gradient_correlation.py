"""Where a small image sits inside a large one: edge-map correlation over every shift at once.

Why: a micro-CT cube is a few centimetres wide inside an MRI of a whole knee, and its header shares
no coordinate system with the MRI. Pose-by-pose mutual information cannot cover that space: on the
porcine cube its score peak is ~4 mm wide while a whole-field position grid steps 25 mm, so the
search picked a look-alike 47 mm away. Edges (gradient magnitude) of bone and tissue boundaries show
in both modalities, and the normalised cross-correlation of two edge maps can be computed for every
shift with two FFTs per rotation: on that cube, 228 rotations x every position took 9.5 s and
ranked the true pose first (NCC 0.83, 4.7 mm away, the rotation grid's error; the next-best pose
scored 0.65, 35 mm away). The candidates found here are only starting points: the search rescores
them with mutual information and refines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .geometry import physical_box
from .preprocessing import downsample, shrink_factors_for_spacing

#: Largest grid (voxels) the large image's edge map is correlated on; the spacing grows to fit.
MAX_CORRELATION_VOXELS = 4_000_000
#: The small image spans about this many voxels along its longest side at the correlation spacing.
SMALL_IMAGE_VOXELS_ACROSS = 20
_AXES = (0, 1, 2)


@dataclass
class CorrelationCandidate:
    """A pose (4x4 matrix mapping small-image points to large-image points) and its edge NCC."""

    matrix: np.ndarray
    ncc: float


def correlation_spacing(small: sitk.Image, large: sitk.Image, finest_mm: float) -> float:
    """Spacing (mm) for the correlation: ~20 voxels across the small image, the large one's grid capped."""
    spacing = max(finest_mm, float(physical_box(small).size.max()) / SMALL_IMAGE_VOXELS_ACROSS)
    return max(spacing, (physical_box(large).volume / MAX_CORRELATION_VOXELS) ** (1 / 3))


def edge_map(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Gradient magnitude at ``spacing_mm`` (block-averaged first, Gaussian of the same width)."""
    coarse = downsample(sitk.Cast(image, sitk.sitkFloat32), shrink_factors_for_spacing(image.GetSpacing(), spacing_mm))
    return sitk.GradientMagnitudeRecursiveGaussian(coarse, sigma=spacing_mm)


def correlation_candidates(
    small: sitk.Image,
    large: sitk.Image,
    rotations: Sequence[np.ndarray],
    spacing_mm: float,
    count: int = 3,
    should_cancel: Optional[Callable[[], bool]] = None,
) -> List[CorrelationCandidate]:
    """The ``count`` best poses of ``small`` inside ``large`` over ``rotations`` and every shift.

    ``rotations`` are 3x3 matrices turning the small image's physical axes into the large image's.
    For each, the small image's edge map is resampled turned onto an axis-aligned grid and slid over
    the large image's edge map; normalised cross-correlation over the ball inscribed in the small
    image (the same ball at every rotation) is computed for all shifts with FFTs, and its peak
    located to sub-voxel precision. Poses closer than 6 mm and 10 deg to a better one are dropped.
    An elongated small image only counts by its inscribed ball: its ends do not take part.
    """
    large_edges, origin = _axis_aligned(edge_map(large, spacing_mm), spacing_mm)
    small_edges = edge_map(small, spacing_mm)
    small_box = physical_box(small_edges)
    center = small_box.lower + small_box.size / 2.0
    # The template is the ball inscribed in the small image: it looks the same under every rotation,
    # so the large map's local sums under it are computed once, and each rotation costs two FFTs.
    radius = float(small_box.size.min()) / 2.0
    side = int(np.ceil(2.0 * radius / spacing_mm)) | 1  # odd: a centre voxel
    offsets = (np.arange(side) - (side - 1) / 2.0) * spacing_mm
    ball = (offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2) <= radius**2
    valid = [n - side + 1 for n in large_edges.shape]
    if min(valid) < 1 or ball.sum() < 27:
        return []
    # No padding needed: windows that lie wholly inside the large map never wrap around.
    shape = [_fast_size(n) for n in large_edges.shape]
    large_fft = np.fft.rfftn(large_edges, shape, axes=_AXES)
    spread = _window_spread(large_fft, np.fft.rfftn(large_edges * large_edges, shape, axes=_AXES), ball, shape)
    # Flat windows (air) have almost no variance: floor it at 1% of the whole map's, so they cannot
    # reach a high NCC by dividing noise by nothing.
    spread = np.maximum(spread, np.sqrt(0.01 * float(large_edges.var()) * ball.sum()))
    found: List[CorrelationCandidate] = []
    for rotation in rotations:
        if should_cancel is not None and should_cancel():
            break
        template = _turned_template(small_edges, center, rotation, side, spacing_mm, ball)
        if template is None:
            continue
        product = large_fft * np.conj(np.fft.rfftn(template, shape, axes=_AXES))
        ncc = (np.fft.irfftn(product, shape, axes=_AXES) / spread)[: valid[0], : valid[1], : valid[2]]
        best = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        peak = np.array(best, dtype=float) + _subvoxel_offset(ncc, best)
        position = origin + (peak[::-1] + (side - 1) / 2.0) * spacing_mm
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = position - rotation @ center
        found.append(CorrelationCandidate(matrix, float(ncc[best])))
    found.sort(key=lambda c: -c.ncc)
    chosen: List[CorrelationCandidate] = []
    for candidate in found:
        if all(_distinct(candidate.matrix, other.matrix, center) for other in chosen):
            chosen.append(candidate)
        if len(chosen) == count:
            break
    return chosen


def _fast_size(n: int) -> int:
    """Smallest size >= ``n`` with no prime factor above 5 (FFTs are fast there: 129 -> 135, not 256)."""
    size = n
    while True:
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _axis_aligned(image: sitk.Image, spacing_mm: float):
    """``image`` resampled onto an axis-aligned LPS grid covering it; (array z,y,x; grid origin)."""
    box = physical_box(image)
    size = [max(1, int(np.ceil(s / spacing_mm))) for s in box.size]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetOrigin(box.lower.tolist())
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled).astype(np.float64), box.lower


def _turned_template(edges: sitk.Image, center: np.ndarray, rotation: np.ndarray, side: int, spacing_mm: float,
                     ball: np.ndarray) -> Optional[np.ndarray]:
    """The small edge map turned by ``rotation`` about ``center`` on an axis-aligned cube of ``side``
    voxels, zero-mean and unit-norm inside ``ball``, zero outside (None when it is flat)."""
    grid = sitk.Image([side] * 3, sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetOrigin((-(side - 1) / 2.0 * spacing_mm * np.ones(3)).tolist())
    back = sitk.AffineTransform(3)  # template offset q -> small-image point center + R^T q
    back.SetMatrix(rotation.T.ravel().tolist())
    back.SetTranslation(center.tolist())
    values = sitk.GetArrayFromImage(sitk.Resample(edges, grid, back, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    template = np.where(ball, values - values[ball].mean(), 0.0)
    norm = float(np.sqrt((template**2).sum()))
    return template / norm if norm > 0 else None


def _subvoxel_offset(values: np.ndarray, best) -> np.ndarray:
    """Offset (voxels, per array axis) of a parabola's vertex through the peak and its neighbours."""
    offset = np.zeros(3)
    for axis in range(3):
        if 0 < best[axis] < values.shape[axis] - 1:
            before, after = list(best), list(best)
            before[axis] -= 1
            after[axis] += 1
            low, middle, high = values[tuple(before)], values[tuple(best)], values[tuple(after)]
            curvature = low - 2.0 * middle + high
            if curvature < 0:
                offset[axis] = float(np.clip(0.5 * (low - high) / curvature, -0.5, 0.5))
    return offset


def _window_spread(large_fft, large_squared_fft, ball: np.ndarray, shape) -> np.ndarray:
    """sqrt(sum of squared deviations from the mean) of the large map under the ball, per shift."""
    weight_fft = np.conj(np.fft.rfftn(ball.astype(np.float64), shape, axes=_AXES))
    local_sum = np.fft.irfftn(large_fft * weight_fft, shape, axes=_AXES)
    local_squares = np.fft.irfftn(large_squared_fft * weight_fft, shape, axes=_AXES)
    return np.sqrt(np.maximum(local_squares - local_sum * local_sum / ball.sum(), 0.0))


def _distinct(a: np.ndarray, b: np.ndarray, center: np.ndarray) -> bool:
    moved = np.linalg.norm((a[:3, :3] - b[:3, :3]) @ center + a[:3, 3] - b[:3, 3])
    turn = np.degrees(np.arccos(np.clip((np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2, -1.0, 1.0)))
    return bool(moved > 6.0 or turn > 10.0)
