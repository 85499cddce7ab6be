"""Known poses for generated cases: rigid 4x4 matrices, moved image headers, random rotations.

Why: a generated case is only as good as its answer. Every answer here is built by moving an image's
*header* by a known pose (the voxel once at y now lies at Q(y)): the data are not resampled, so the
answer carries no interpolation error. With 4x4 matrices (LPS millimetres, points as column
vectors) the composition order stays explicit: ``a @ b`` applies ``b`` first.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import apply_matrix, rotation_matrix

#: Start groups: "within60" draws the angle uniformly in [0, 60] deg about a uniform axis (the common
#: case, evenly spread); "any" draws the rotation uniformly over the whole rotation group (Haar
#: measure: most angles lie between 90 and 180 deg).
START_GROUPS = ("within60", "any")


def axis_angle_matrix(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` about ``axis`` (right-handed).

    Example:
        >>> axis_angle_matrix((0, 0, 1), 90.0).round(6)[:2, :2]
        array([[ 0., -1.],
               [ 1.,  0.]])
    """
    unit = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return rotation_matrix(unit * math.radians(angle_deg))


def pose(rotation: np.ndarray, translation: Sequence[float], center: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    """4x4 matrix rotating about ``center`` and then translating: x -> R (x - c) + c + t.

    Example:
        >>> pose(np.eye(3), (1, 2, 3))[:3, 3]
        array([1., 2., 3.])
    """
    c = np.asarray(center, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = c - rotation @ c + np.asarray(translation, dtype=float)
    return matrix


def header_moved(image: sitk.Image, matrix: np.ndarray) -> sitk.Image:
    """``image`` with its header moved by ``matrix``: the voxel once at x now lies at matrix(x).

    Only the origin and direction change (exact, no resampling): new direction = R D, new origin =
    R o + t. Works for left-handed (negative-determinant) grids too. The voxel data are shared with
    ``image`` until either is written to. An image moved by ``P @ inv(T)``, where ``T`` was the
    answer (fixed -> this image), has the answer ``P``.

    Example:
        >>> moved = header_moved(mr, pose(axis_angle_matrix((0, 0, 1), 30), (0, 0, 10)))
    """
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9):
        raise ValueError("header_moved needs a rigid matrix")
    moved = sitk.Image(image)
    direction = rotation @ np.array(image.GetDirection()).reshape(3, 3)
    moved.SetDirection(direction.ravel().tolist())
    moved.SetOrigin(apply_matrix(matrix, np.array([image.GetOrigin()]))[0].tolist())
    return moved


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A direction uniformly distributed on the sphere."""
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def random_rotation(rng: np.random.Generator, group: str = "any") -> Tuple[np.ndarray, float]:
    """(unit axis, angle in degrees) of a random rotation from ``group`` (see ``START_GROUPS``).

    "any" uses a uniform random unit quaternion, which is uniform over the rotation group.

    Example:
        >>> axis, angle = random_rotation(np.random.default_rng(1), "within60")
    """
    if group == "within60":
        return random_unit_vector(rng), float(rng.uniform(0.0, 60.0))
    if group != "any":
        raise ValueError(f"unknown start group {group!r}: use one of {START_GROUPS}")
    quaternion = rng.normal(size=4)
    quaternion /= np.linalg.norm(quaternion)
    if quaternion[0] < 0:
        quaternion = -quaternion
    vector = quaternion[1:]
    norm = float(np.linalg.norm(vector))
    angle = math.degrees(2.0 * math.atan2(norm, quaternion[0]))
    return (vector / norm if norm > 0 else np.array([0.0, 0.0, 1.0])), angle


def random_direction_matrix(rng: np.random.Generator, flipped: bool) -> np.ndarray:
    """A random orthonormal image direction matrix; ``flipped`` negates one axis (determinant -1).

    A left-handed grid stores the same anatomy in mirrored index order: no mirror in physical space.
    """
    axis, angle = random_rotation(rng, "any")
    direction = axis_angle_matrix(axis, angle)
    if flipped:
        direction[:, int(rng.integers(3))] *= -1.0
    return direction
