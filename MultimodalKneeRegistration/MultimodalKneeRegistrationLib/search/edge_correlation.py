"""Where a small image sits inside a large one: edge-map correlation over every shift at once.

Why: a micro-CT cube is a few centimetres wide inside an MRI of a whole knee, and its header shares
no coordinate system with the MRI. Pose-by-pose mutual information cannot cover that space: on the
porcine cube its score peak is ~4 mm wide while a whole-field position grid steps 25 mm, so the
search picked a look-alike 47 mm away. Edges (gradient magnitude) of bone and tissue boundaries show
in both modalities, and the normalised cross-correlation of two edge maps can be computed for every
shift with two FFTs per rotation: on that cube, 228 rotations x every position took 9.5 s and
ranked the true pose first (NCC 0.83, 4.7 mm away, the rotation grid's error; the next-best pose
scored 0.65, 35 mm away). ``pose_levels`` drives it over every orientation, coarse to fine; the
candidates found here are only starting points: the search rescores them with mutual information
and refines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..geometry import apply_matrix, index_to_physical_matrix, mask_on_grid, physical_box
from ..steps.preprocessing import downsample, shrink_factors_for_spacing
from .poses import DistinctPeaks
from .turned_template import TemplateTurner

#: Largest grid (voxels) the large image's edge map is correlated on; the spacing grows to fit.
MAX_CORRELATION_VOXELS = 4_000_000
#: The small image spans about this many voxels along its longest side at the correlation spacing.
SMALL_IMAGE_VOXELS_ACROSS = 20
#: The largest grid of the first level only, which correlates every orientation over the whole
#: field: its FFTs cost in proportion to that grid, once per rotation (449), while the refinement
#: levels correlate small windows. See ``whole_field_spacing``.
WHOLE_FIELD_MAX_VOXELS = 1_500_000
#: FFT axes, last the one that is halved: the spectra keep half of z (``_spectrum``).
_HALF_ALONG_Z = (2, 1, 0)


@dataclass
class CorrelationCandidate:
    """A pose (4x4 matrix mapping small-image points to large-image points) and its edge NCC."""

    matrix: np.ndarray
    ncc: float
    #: The search's mutual information at the pose (``nan`` until scored).
    score: float = float("nan")


def correlation_spacing(small: sitk.Image, large: sitk.Image, finest_mm: float,
                        across: int = SMALL_IMAGE_VOXELS_ACROSS, max_voxels: float = MAX_CORRELATION_VOXELS) -> float:
    """Spacing (mm) for the correlation: ``across`` voxels over the small image's own longest side
    (not its axis-aligned box, up to 1.7x larger for an oblique grid), the large one's grid capped.

    Both are measured along the images' own axes: the large edge map lies on its own axes too, so a
    turned MRI (a moved header) costs no more than a straight one. Measuring the turned MRI's LPS box
    instead made the correlation up to 1.4x coarser when the micro-CT was the fixed image.
    """
    extent = np.array(small.GetSize(), dtype=float) * np.array(small.GetSpacing())
    spacing = max(finest_mm, float(extent.max()) / across)
    large_volume = float(np.prod(np.array(large.GetSize(), dtype=float) * np.array(large.GetSpacing())))
    return max(spacing, (large_volume / max_voxels) ** (1 / 3))


def whole_field_spacing(small: sitk.Image, large: sitk.Image, finest_mm: float) -> float:
    """Spacing (mm) of the first, whole-field level: ``correlation_spacing`` with a smaller grid cap.

    Why: that level only has to keep the answer's neighbourhood among the poses the finer levels
    refine. A 20 mm cube in a knee MRI was correlated on a 4 M-voxel grid (1.6 mm), 22 s of CPU for
    its 449 rotations; capped at 1.5 M voxels (2.2 mm) it took 6 s. Measured on the case family's 40
    CT-look cubes: the same outcomes but one more well-posed cube found, median CPU 51 -> 25 s. A
    coarser grid for every cube (14 voxels across instead of 20) lost two well-posed cubes.
    """
    return correlation_spacing(small, large, finest_mm, max_voxels=WHOLE_FIELD_MAX_VOXELS)


def edge_map(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Gradient magnitude at ``spacing_mm`` (block-averaged first, Gaussian of the same width).

    Block-averaged before any cast: a float copy of a full-resolution MRI working image cost 98 MB.
    """
    coarse = downsample(image, shrink_factors_for_spacing(image.GetSpacing(), spacing_mm))
    return sitk.GradientMagnitudeRecursiveGaussian(coarse, sigma=spacing_mm)


class EdgeCorrelator:
    """The small edge map's ball template against the large edge map, whole or in windows.

    The large map lies on an isotropic grid along the large image's own axes, not on an axis-aligned
    LPS box: a turned MRI's box is up to 2.5x larger, and the FFTs paid for its empty corners.
    """

    def __init__(self, small: sitk.Image, large: sitk.Image, spacing_mm: float,
                 mask: Optional[sitk.Image] = None) -> None:
        self.spacing = spacing_mm
        self.edges, self.origin, self.direction = _own_axes_grid(edge_map(large, spacing_mm), spacing_mm)
        self.small_edges = edge_map(small, spacing_mm)
        box = physical_box(self.small_edges)
        self.center = box.lower + box.size / 2.0
        # The template is the ball inscribed in the small image: it looks the same under every
        # rotation, so the large map's local sums under it are computed once per window. Inscribed in
        # the image's own grid, not in its axis-aligned box: for an oblique micro-CT the box's ball
        # reaches past the image, and the empty margin it took in spoiled the correlation. With a
        # ``mask`` (a micro-CT's reconstruction cylinder) the ball also stays two edge-map voxels
        # inside it: the rim's edge is the strongest in the image and has no match in the other.
        extent = np.array(self.small_edges.GetSize(), dtype=float) * np.array(self.small_edges.GetSpacing())
        radius = float(extent.min()) / 2.0
        if mask is not None:
            radius = min(radius, _reach_inside(mask, self.small_edges, self.center) - 2.0 * spacing_mm)
        self.side = int(np.ceil(2.0 * radius / spacing_mm)) | 1  # odd: a centre voxel
        offsets = (np.arange(self.side) - (self.side - 1) / 2.0) * spacing_mm
        squared = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
        self.ball = squared <= radius**2
        self.usable = min(self.edges.shape) >= self.side and self.ball.sum() >= 27
        self.turner = TemplateTurner(self.small_edges, self.center, self.direction, self.side, spacing_mm, self.ball)
        # Flat windows (air) have almost no variance: floor it at 1% of the whole map's, so they
        # cannot reach a high NCC by dividing noise by nothing.
        self.spread_floor = float(np.sqrt(0.01 * float(self.edges.var()) * self.ball.sum()))

    def whole(self) -> dict:
        """The window of every shift of the template over the large map."""
        return self.window(np.zeros(3, dtype=int), np.array(self.edges.shape))

    def window_around(self, matrix: np.ndarray, reach_mm: float) -> dict:
        """The window of shifts within ``reach_mm`` of the pose ``matrix`` (small -> large, 4x4)."""
        position = matrix[:3, :3] @ self.center + matrix[:3, 3]
        index = self.direction.T @ (position - self.origin) / self.spacing - (self.side - 1) / 2.0
        corner = np.round(index).astype(int)[::-1]
        reach = int(np.ceil(reach_mm / self.spacing))
        low = np.clip(corner - reach, 0, None)
        high = np.maximum(np.minimum(corner + self.side + reach, self.edges.shape), low)
        return self.window(low, high)

    def window(self, low: np.ndarray, high: np.ndarray) -> dict:
        """FFTs of the large map from index ``low`` to ``high`` (z, y, x) and its spread under the ball."""
        array = self.edges[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        valid = [max(0, n - self.side + 1) for n in array.shape]
        if min(valid) < 1:
            return {"valid": valid}
        # No padding needed: windows that lie wholly inside the array never wrap around.
        shape = [_fast_size(n) for n in array.shape]
        transformed = _spectrum(array, shape)
        spread = _window_spread(transformed, _spectrum(array * array, shape), self.ball, shape)
        spread = np.maximum(spread[: valid[0], : valid[1], : valid[2]], self.spread_floor)
        return {"fft": transformed, "inverse_spread": 1.0 / spread, "shape": shape, "valid": valid,
                "start": np.asarray(low)}

    def best(self, rotation: np.ndarray, window: dict) -> Optional[CorrelationCandidate]:
        """The best shift for ``rotation`` inside ``window`` (None when the turned template is flat)."""
        if min(window["valid"]) < 1:
            return None
        template = self.turner.turned(rotation)
        if template is None:
            return None
        shape, valid = window["shape"], window["valid"]
        product = window["fft"] * np.conj(_padded_rfftn(template, shape))
        ncc = _valid_irfftn(product, shape, valid) * window["inverse_spread"]
        best = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        peak = window["start"] + np.array(best, dtype=float) + _subvoxel_offset(ncc, best)
        position = self.origin + self.direction @ ((peak[::-1] + (self.side - 1) / 2.0) * self.spacing)
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = position - rotation @ self.center
        return CorrelationCandidate(matrix, float(ncc[best]))


def distinct_best(found: Sequence[CorrelationCandidate], distinct: DistinctPeaks, count: int,
                  key: Callable[[CorrelationCandidate], float] = lambda c: c.ncc) -> List[CorrelationCandidate]:
    """The ``count`` best poses by ``key`` (NCC by default), each a different peak (``poses.DistinctPeaks``)
    from every better one."""
    chosen: List[CorrelationCandidate] = []
    for candidate in sorted(found, key=lambda c: -key(c)):
        if all(distinct.differ(candidate.matrix, other.matrix) for other in chosen):
            chosen.append(candidate)
        if len(chosen) == count:
            break
    return chosen


def _reach_inside(mask: sitk.Image, grid: sitk.Image, center: np.ndarray) -> float:
    """How far (mm) from ``center`` the nearest voxel of ``grid`` outside ``mask`` lies."""
    outside = np.argwhere(~mask_on_grid(mask, grid))[:, ::-1].astype(np.float64)
    if len(outside) == 0:
        return np.inf
    points = apply_matrix(index_to_physical_matrix(grid), outside)
    return float(np.linalg.norm(points - center, axis=1).min())


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


def _own_axes_grid(image: sitk.Image, spacing_mm: float):
    """``image`` resampled at ``spacing_mm`` along its own axes, covering it: (array z,y,x, origin, direction)."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    extent = (np.array(image.GetSize(), dtype=float)) * np.array(image.GetSpacing())
    size = [max(1, int(np.ceil(e / spacing_mm))) for e in extent]
    corner = index_to_physical_matrix(image)[:3, :3] @ np.full(3, -0.5) + np.array(image.GetOrigin())
    origin = corner + direction @ np.full(3, spacing_mm / 2.0)
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(direction.ravel().tolist())
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled), origin, direction  # float32: FFTs twice as fast, NCC as good


def _spectrum(array: np.ndarray, shape) -> np.ndarray:
    """The real FFT of ``array`` zero-padded to ``shape`` (z, y, x), its half spectrum along z.

    Why along z, not numpy's default x: a template's transform (``_padded_rfftn``) has one pass over
    the whole grid, and it is the last; with the half spectrum along z that pass runs along the
    contiguous x lines. Measured on the 48 mm cube's 100 x 108 x 108 grid, two threads: 8.6 instead
    of 9.6 ms a rotation (template transform, product and inverse).
    """
    return np.fft.rfftn(array, shape[::-1], axes=_HALF_ALONG_Z)


def _padded_rfftn(template: np.ndarray, shape) -> np.ndarray:
    """``_spectrum(template, shape)`` for a small template in a large zero-padded array, pruned.

    Each axis is transformed only over the lines that hold data: z on the template's own side x side
    lines, y on side planes; only x, the last and contiguous axis, runs over the whole grid. Same
    numbers as the full transform (zero lines transform to zero), a third of its work.
    """
    transformed = np.fft.rfft(template, shape[0], axis=0)
    transformed = np.fft.fft(transformed, shape[1], axis=1)
    return np.fft.fft(transformed, shape[2], axis=2)


def _valid_irfftn(product: np.ndarray, shape, valid) -> np.ndarray:
    """The inverse of ``_spectrum`` cut to the ``valid`` shifts (z, y, x): each axis is cut as soon as
    it is back in space, so the later passes transform fewer lines."""
    values = np.fft.ifft(product, axis=2)[..., : valid[2]]
    values = np.fft.ifft(values, axis=1)[:, : valid[1]]
    return np.fft.irfft(values, shape[0], axis=0)[: valid[0]]


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
    weight_fft = np.conj(_spectrum(ball.astype(np.float32), shape))
    local_sum = np.fft.irfftn(large_fft * weight_fft, shape[::-1], axes=_HALF_ALONG_Z)
    local_squares = np.fft.irfftn(large_squared_fft * weight_fft, shape[::-1], axes=_HALF_ALONG_Z)
    return np.sqrt(np.maximum(local_squares - local_sum * local_sum / ball.sum(), 0.0))

