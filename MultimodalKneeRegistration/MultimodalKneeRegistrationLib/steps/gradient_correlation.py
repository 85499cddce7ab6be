"""Where a small image sits inside a large one: edge-map correlation over every shift at once.

Why: a micro-CT cube is a few centimetres wide inside an MRI of a whole knee, and its header shares
no coordinate system with the MRI. Pose-by-pose mutual information cannot cover that space: on the
porcine cube its score peak is ~4 mm wide while a whole-field position grid steps 25 mm, so the
search picked a look-alike 47 mm away. Edges (gradient magnitude) of bone and tissue boundaries show
in both modalities, and the normalised cross-correlation of two edge maps can be computed for every
shift with two FFTs per rotation: on that cube, 228 rotations x every position took 9.5 s and
ranked the true pose first (NCC 0.83, 4.7 mm away, the rotation grid's error; the next-best pose
scored 0.65, 35 mm away). A refinement of the best poses' rotations covers answers that fall
between the grid's rotations (see ``correlation_candidates``). The candidates found here are only
starting points: the search rescores them with mutual information and refines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..geometry import physical_box, rotation_angle_deg, rotation_matrix
from ..progress import Progress
from .preprocessing import downsample, shrink_factors_for_spacing

#: Largest grid (voxels) the large image's edge map is correlated on; the spacing grows to fit.
MAX_CORRELATION_VOXELS = 4_000_000
#: The small image spans about this many voxels along its longest side at the correlation spacing,
#: and at the coarser spacing where every rotation of the search is tried first.
SMALL_IMAGE_VOXELS_ACROSS = 20
COARSE_VOXELS_ACROSS = 20
_AXES = (0, 1, 2)


@dataclass
class CorrelationCandidate:
    """A pose (4x4 matrix mapping small-image points to large-image points) and its edge NCC."""

    matrix: np.ndarray
    ncc: float


def correlation_spacing(small: sitk.Image, large: sitk.Image, finest_mm: float,
                        across: int = SMALL_IMAGE_VOXELS_ACROSS) -> float:
    """Spacing (mm) for the correlation: ``across`` voxels over the small image's own longest side
    (not its axis-aligned box, up to 1.7x larger for an oblique grid), the large one's grid capped."""
    extent = np.array(small.GetSize(), dtype=float) * np.array(small.GetSpacing())
    spacing = max(finest_mm, float(extent.max()) / across)
    return max(spacing, (physical_box(large).volume / MAX_CORRELATION_VOXELS) ** (1 / 3))


def edge_map(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Gradient magnitude at ``spacing_mm`` (block-averaged first, Gaussian of the same width).

    Block-averaged before any cast: a float copy of a full-resolution MRI working image cost 98 MB.
    """
    coarse = downsample(image, shrink_factors_for_spacing(image.GetSpacing(), spacing_mm))
    return sitk.GradientMagnitudeRecursiveGaussian(coarse, sigma=spacing_mm)


def correlation_candidates(
    small: sitk.Image,
    large: sitk.Image,
    rotations: Sequence[np.ndarray],
    spacing_mm: float,
    count: int = 3,
    progress: Optional[Progress] = None,
) -> List[CorrelationCandidate]:
    """The ``count`` best poses of ``small`` inside ``large`` over ``rotations`` and every shift.

    ``rotations`` are 3x3 matrices turning the small image's physical axes into the large image's.
    For each, the small image's edge map is resampled turned onto an axis-aligned grid and slid over
    the large image's edge map; normalised cross-correlation over the ball inscribed in the small
    image (the same ball at every rotation) is computed for all shifts with FFTs, and its peak
    located to sub-voxel precision. The best distinct poses (6 mm or 10 deg apart) then have their
    rotation refined in 10, 5 and 2.5 deg steps, each step correlated over a window around the pose:
    a 25 deg rotation grid can miss the answer by 17 deg, where the true pose's NCC (0.70) no longer
    beats a look-alike's (0.67); refined, it reached 0.86. An elongated small image only counts by
    its inscribed ball: its ends do not take part.
    """
    progress = progress or Progress()
    coarse_mm = max(spacing_mm, correlation_spacing(small, large, spacing_mm, COARSE_VOXELS_ACROSS))
    coarse = _coarse_pass(small, large, rotations, coarse_mm, _REFINED_PER_RESULT * count, progress)
    large_edges, origin = _axis_aligned(edge_map(large, spacing_mm), spacing_mm)
    correlator = _Correlator(large_edges, origin, edge_map(small, spacing_mm), spacing_mm)
    if not correlator.usable or not coarse:
        return []
    refined = []
    for number, candidate in enumerate(coarse):
        progress.check_cancel("during the edge correlation")
        progress.report(0.8 + 0.2 * number / len(coarse), "search: refining the edge correlation's rotations")
        refined.append(correlator.refine(candidate, large_edges, progress))
    return _distinct_best(refined or coarse, correlator.center, count)


def _coarse_pass(small, large, rotations, spacing_mm: float, keep: int, progress: Progress
                 ) -> List[CorrelationCandidate]:
    """Every rotation correlated over every shift at the coarse spacing; the ``keep`` best distinct poses."""
    large_edges, origin = _axis_aligned(edge_map(large, spacing_mm), spacing_mm)
    correlator = _Correlator(large_edges, origin, edge_map(small, spacing_mm), spacing_mm)
    if not correlator.usable:
        return []
    whole = correlator.window(large_edges, np.zeros(3, dtype=int))
    found: List[CorrelationCandidate] = []
    for number, rotation in enumerate(rotations):
        progress.check_cancel("during the edge correlation")
        progress.report(0.8 * number / max(1, len(rotations)), f"search: edge correlation ({number}/{len(rotations)})")
        candidate = correlator.best(rotation, whole)
        if candidate is not None:
            found.append(candidate)
    return _distinct_best(found, correlator.center, keep)


#: Coarse poses refined for each pose returned.
_REFINED_PER_RESULT = 4
#: Rotation steps (deg) of the refinement, and how far (mm) its window reaches around a pose.
_REFINE_STEPS_DEG = (10.0, 5.0, 2.5)
_REFINE_REACH_MM = 8.0


class _Correlator:
    """The small edge map's ball template against the large edge map, whole or in windows."""

    def __init__(self, large_edges: np.ndarray, origin: np.ndarray, small_edges: sitk.Image, spacing_mm: float):
        self.origin, self.small_edges, self.spacing = origin, small_edges, spacing_mm
        box = physical_box(small_edges)
        self.center = box.lower + box.size / 2.0
        # The template is the ball inscribed in the small image: it looks the same under every
        # rotation, so the large map's local sums under it are computed once per window. Inscribed in
        # the image's own grid, not in its axis-aligned box: for an oblique micro-CT the box's ball
        # reaches past the image, and the empty margin it took in spoiled the correlation.
        extent = np.array(small_edges.GetSize(), dtype=float) * np.array(small_edges.GetSpacing())
        radius = float(extent.min()) / 2.0
        self.side = int(np.ceil(2.0 * radius / spacing_mm)) | 1  # odd: a centre voxel
        offsets = (np.arange(self.side) - (self.side - 1) / 2.0) * spacing_mm
        squared = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
        self.ball = squared <= radius**2
        self.usable = min(large_edges.shape) >= self.side and self.ball.sum() >= 27
        # Flat windows (air) have almost no variance: floor it at 1% of the whole map's, so they
        # cannot reach a high NCC by dividing noise by nothing.
        self.spread_floor = float(np.sqrt(0.01 * float(large_edges.var()) * self.ball.sum()))

    def window(self, array: np.ndarray, start: np.ndarray) -> dict:
        """FFTs of ``array`` (the large map from index ``start``, z,y,x) and its spread under the ball."""
        # No padding needed: windows that lie wholly inside the array never wrap around.
        shape = [_fast_size(n) for n in array.shape]
        transformed = np.fft.rfftn(array, shape, axes=_AXES)
        spread = _window_spread(transformed, np.fft.rfftn(array * array, shape, axes=_AXES), self.ball, shape)
        valid = [n - self.side + 1 for n in array.shape]
        return {"fft": transformed, "spread": np.maximum(spread, self.spread_floor), "shape": shape,
                "valid": valid, "start": start}

    def best(self, rotation: np.ndarray, window: dict) -> Optional[CorrelationCandidate]:
        """The best shift for ``rotation`` inside ``window`` (None when the turned template is flat)."""
        template = _turned_template(self.small_edges, self.center, rotation, self.side, self.spacing, self.ball)
        if template is None or min(window["valid"]) < 1:
            return None
        shape, valid = window["shape"], window["valid"]
        product = window["fft"] * np.conj(np.fft.rfftn(template, shape, axes=_AXES))
        ncc = (np.fft.irfftn(product, shape, axes=_AXES) / window["spread"])[: valid[0], : valid[1], : valid[2]]
        best = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        peak = window["start"] + np.array(best, dtype=float) + _subvoxel_offset(ncc, best)
        position = self.origin + (peak[::-1] + (self.side - 1) / 2.0) * self.spacing
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = position - rotation @ self.center
        return CorrelationCandidate(matrix, float(ncc[best]))

    def refine(self, candidate: CorrelationCandidate, large_edges: np.ndarray, progress: Progress
               ) -> CorrelationCandidate:
        """Greedy rotation steps about the small image's axes, shifts searched in a window around the pose."""
        position = candidate.matrix[:3, :3] @ self.center + candidate.matrix[:3, 3]
        reach = int(np.ceil(_REFINE_REACH_MM / self.spacing))
        corner = np.round((position - self.origin) / self.spacing - (self.side - 1) / 2.0).astype(int)[::-1]
        low = np.clip(corner - reach, 0, None)
        high = np.minimum(corner + self.side + reach, large_edges.shape)
        window = self.window(large_edges[low[0]:high[0], low[1]:high[1], low[2]:high[2]], low)
        current = self.best(candidate.matrix[:3, :3], window) or candidate
        for step in _REFINE_STEPS_DEG:
            for _ in range(4):  # a few moves per step size: the coarse grid is at most ~17 deg off
                progress.check_cancel("during the edge correlation")
                turns = [
                    current.matrix[:3, :3] @ rotation_matrix(np.radians(sign * step) * axis)
                    for axis in np.eye(3)
                    for sign in (-1, 1)
                ]
                tried = [c for c in (self.best(turn, window) for turn in turns) if c is not None]
                better = max(tried, key=lambda c: c.ncc, default=None)
                if better is None or better.ncc <= current.ncc:
                    break
                current = better
        return current


def _distinct_best(found: List[CorrelationCandidate], center: np.ndarray, count: int) -> List[CorrelationCandidate]:
    """The ``count`` highest-NCC poses, each at least 6 mm or 10 deg from every better one."""
    chosen: List[CorrelationCandidate] = []
    for candidate in sorted(found, key=lambda c: -c.ncc):
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
    return sitk.GetArrayFromImage(resampled), box.lower  # float32: FFTs twice as fast, NCC as good


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
    weight_fft = np.conj(np.fft.rfftn(ball.astype(np.float32), shape, axes=_AXES))
    local_sum = np.fft.irfftn(large_fft * weight_fft, shape, axes=_AXES)
    local_squares = np.fft.irfftn(large_squared_fft * weight_fft, shape, axes=_AXES)
    return np.sqrt(np.maximum(local_squares - local_sum * local_sum / ball.sum(), 0.0))


def _distinct(a: np.ndarray, b: np.ndarray, center: np.ndarray) -> bool:
    moved = np.linalg.norm((a[:3, :3] - b[:3, :3]) @ center + a[:3, 3] - b[:3, 3])
    return bool(moved > 6.0 or rotation_angle_deg(a[:3, :3].T @ b[:3, :3]) > 10.0)
