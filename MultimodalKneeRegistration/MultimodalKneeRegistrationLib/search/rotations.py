"""The rotations the search tries: dense near the start and the half turns, and every other orientation.

Why: a specimen's micro-CT can come in any orientation relative to an MRI. The search used to try
rotations within 60 deg of the start and of the three half turns (228 rotations); some orientations
were then 75 deg from every one it tried, and a cube turned 120 deg was refused or, worse, placed
wrong. The set here keeps that dense local grid (the common case stays as it was) and fills the
rest of the rotation group with a near-uniform "super-Fibonacci" sample (Alexa, CVPR 2022), so that
every orientation lies within a stated covering radius of a tried rotation.
"""

from __future__ import annotations

import functools
import itertools
from typing import List, Tuple

import numpy as np

from ..geometry import rotation_matrix

#: Two rotations closer than this (deg) count as the same try: fill rotations near the grid are dropped.
FILL_MIN_DISTANCE_DEG = 20.0


def rotation_candidates(max_angle_deg: float, step_deg: float) -> List[np.ndarray]:
    """Rotation vectors (axis * angle, radians) on a cubic grid inside a ball of ``max_angle_deg``.

    Example:
        >>> len(rotation_candidates(60, 25))
        57
    """
    if max_angle_deg <= 0:
        return [np.zeros(3)]
    n = int(np.floor(max_angle_deg / step_deg + 1e-9))
    axis = np.arange(-n, n + 1) * np.radians(step_deg)
    limit = np.radians(max_angle_deg) + 1e-9
    return [np.array(v) for v in itertools.product(axis, axis, axis) if np.linalg.norm(v) <= limit]


def flip_rotations() -> List[np.ndarray]:
    """Identity and the half turns about x, y and z (in the sampled image's LPS axes).

    Why: specimens and patients are often scanned the other way round (feet- vs head-first, prone vs
    supine, a micro-CT sample turned over). On our porcine pair the right answer is a 178 deg turn.
    """
    return [np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]


def search_rotations(search) -> List[np.ndarray]:
    """3x3 rotations (relative to the start) the search tries, for ``SearchSettings`` ``search``.

    The grid (``max_angle_deg`` at ``angle_step_deg``) around the identity and, with ``flips``, the
    half turns; with ``orientations == "all"`` also ``fill_rotations`` near-uniform rotations, less
    those within ``FILL_MIN_DISTANCE_DEG`` of the grid.
    """
    return [rotation for rotation in _search_set(search.max_angle_deg, search.angle_step_deg, search.flips,
                                                 search.orientations == "all", search.fill_rotations)]


def covering_radius_deg(search) -> float:
    """The largest angle (deg) from any orientation to the nearest tried rotation, measured on 20,000
    random rotations (a lower bound of the exact radius, close to it)."""
    return _covering(search.max_angle_deg, search.angle_step_deg, search.flips, search.orientations == "all",
                     search.fill_rotations)


@functools.lru_cache(maxsize=8)
def _search_set(max_angle: float, step: float, flips: bool, fill: bool, count: int) -> Tuple[np.ndarray, ...]:
    grid = [rotation_matrix(v) for v in rotation_candidates(max_angle, step)]
    bases = flip_rotations() if flips else [np.eye(3)]
    local = [base @ g for base in bases for g in grid]
    if not fill:
        return tuple(local)
    near = np.array([_quaternion(r) for r in local])
    uniform = super_fibonacci(count)
    apart = 2.0 * np.degrees(np.arccos(np.clip(np.abs(uniform @ near.T).max(axis=1), -1.0, 1.0)))
    return tuple(local) + tuple(_matrix(q) for q in uniform[apart > FILL_MIN_DISTANCE_DEG])


@functools.lru_cache(maxsize=8)
def _covering(max_angle: float, step: float, flips: bool, fill: bool, count: int) -> float:
    tried = np.array([_quaternion(r) for r in _search_set(max_angle, step, flips, fill, count)])
    probes = np.random.default_rng(0).normal(size=(20_000, 4))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    nearest = np.abs(probes @ tried.T).max(axis=1)
    return float(2.0 * np.degrees(np.arccos(np.clip(nearest, -1.0, 1.0))).max())


def super_fibonacci(count: int) -> np.ndarray:
    """``count`` unit quaternions (w, x, y, z) spread nearly uniformly over the rotation group."""
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    index = np.arange(count) + 0.5
    s = index / count
    r, big_r = np.sqrt(s), np.sqrt(1.0 - s)
    alpha, beta = 2.0 * np.pi * index / phi, 2.0 * np.pi * index / psi
    return np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1)


def _matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _quaternion(rotation: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(0.0, 1.0 + np.trace(rotation))) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + rotation[0, 0] - rotation[1, 1] - rotation[2, 2])) / 2.0,
                    rotation[2, 1] - rotation[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - rotation[0, 0] + rotation[1, 1] - rotation[2, 2])) / 2.0,
                    rotation[0, 2] - rotation[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - rotation[0, 0] - rotation[1, 1] + rotation[2, 2])) / 2.0,
                    rotation[1, 0] - rotation[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


@functools.lru_cache(maxsize=8)
def local_grid(step_deg: float) -> Tuple[np.ndarray, ...]:
    """3x3 rotations on a cubic grid of rotation vectors ``step_deg`` apart, within twice that of the identity.

    The refinement levels of the search turn each kept pose by these (33 rotations): a rotation within
    ``2 * step_deg`` of the pose is then within ``local_covering_deg(step_deg)`` of a tried one.

    Example:
        >>> len(local_grid(12.0))
        33
    """
    return tuple(rotation_matrix(v) for v in rotation_candidates(2.0 * step_deg, step_deg))


@functools.lru_cache(maxsize=8)
def local_covering_deg(step_deg: float, probes: int = 20_000) -> float:
    """The largest angle (deg) from a rotation within ``2 * step_deg`` of the identity to the nearest
    rotation of ``local_grid(step_deg)``, measured on random probes (a lower bound, close to the exact one)."""
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(probes, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.radians(2.0 * step_deg) * rng.random(probes) ** (1.0 / 3.0)
    probe_quaternions = np.hstack([np.cos(angles / 2.0)[:, None], np.sin(angles / 2.0)[:, None] * axes])
    tried = np.array([_quaternion(r) for r in local_grid(step_deg)])
    nearest = np.abs(probe_quaternions @ tried.T).max(axis=1)
    return float(2.0 * np.degrees(np.arccos(np.clip(nearest, -1.0, 1.0))).max())
