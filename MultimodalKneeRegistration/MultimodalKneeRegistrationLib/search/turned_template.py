"""The small image's edge map turned by one rotation onto the correlation's template, in numpy.

Why: the edge correlation turns its template about 2,000 times per search (449 rotations over every
orientation, then 33 around each kept pose per level). Resampling through SimpleITK cost 0.8 ms a
template, most of it building images and transforms under the GIL, which the second search thread
then waits for; here the ball's points are laid out once and each rotation only maps and
interpolates them (``scorer.trilinear``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..geometry import index_to_physical_matrix
from .scorer import trilinear


class TemplateTurner:
    """Turns ``edges`` (the small edge map) about ``center`` onto a cube of ``side`` voxels along
    ``direction`` (the large map's axes, ``spacing_mm`` apart), keeping the voxels inside ``ball``.

    Linear interpolation, 0 outside the map; a point within half a voxel outside the outer voxel
    centres takes the nearest face's value, as ITK's resampling does (its buffer reaches half a
    voxel past the centres).

    Example:
        >>> turner = TemplateTurner(small_edges, center, np.eye(3), 21, 2.4, ball)  # doctest: +SKIP
        >>> template = turner.turned(rotation)  # 21 x 21 x 21, zero outside the ball  # doctest: +SKIP
    """

    def __init__(self, edges: sitk.Image, center: np.ndarray, direction: np.ndarray, side: int,
                 spacing_mm: float, ball: np.ndarray) -> None:
        self._values = sitk.GetArrayFromImage(edges).astype(np.float32)  # (z, y, x)
        to_index = np.linalg.inv(index_to_physical_matrix(edges))
        self._ball = ball
        zyx = np.argwhere(ball).astype(np.float64)  # template voxel (k, j, i) inside the ball
        offsets = (zyx[:, ::-1] - (side - 1) / 2.0) * spacing_mm @ direction.T  # LPS offset q per voxel
        # Template offset q -> small-image point center + R^T q -> continuous index: A (R^T q) + b.
        self._offsets = offsets
        self._index_matrix = to_index[:3, :3]
        self._index_center = to_index[:3, :3] @ center + to_index[:3, 3]
        self._upper = np.array(self._values.shape[::-1], dtype=np.float64) - 1.0

    def turned(self, rotation: np.ndarray) -> Optional[np.ndarray]:
        """The template for ``rotation``: zero-mean and unit-norm inside the ball, zero outside (None
        when it is flat)."""
        index = self._offsets @ (self._index_matrix @ rotation.T).T + self._index_center
        clipped = np.clip(index, 0.0, self._upper)
        inside = np.abs(index - clipped).max(axis=1) <= 0.5
        values = np.zeros(len(index), dtype=np.float32)
        values[inside] = trilinear(self._values, clipped[inside])[0]
        template = np.zeros(self._ball.shape, dtype=np.float32)
        template[self._ball] = values - values.mean()
        norm = float(np.sqrt(np.square(template, dtype=np.float64).sum()))
        return template / norm if norm > 0 else None
