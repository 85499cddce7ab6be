"""4x4 rigid-transform algebra for the benchmark: poses, composition, image headers, errors.

Why: every number the benchmark reports is a distance between a tool's fixed -> moving transform
and a known answer, and every known answer is built by moving an image's header by a known pose.
Doing that with plain 4x4 matrices (LPS millimetres, points as column vectors) keeps the
composition order explicit: ``compose(a, b)`` applies ``b`` first, like ``a @ b``. The pose and
header algebra lives in the core (``MultimodalKneeRegistrationLib.synthetic.poses``), shared with the
case family; it is re-exported here under the benchmark's old names.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.synthetic.poses import axis_angle_matrix as rotation_matrix  # noqa: F401
from MultimodalKneeRegistrationLib.synthetic.poses import header_moved as moved_image  # noqa: F401
from MultimodalKneeRegistrationLib.synthetic.poses import pose  # noqa: F401


def compose(*matrices: np.ndarray) -> np.ndarray:
    """``compose(a, b, c)`` maps x to a(b(c(x))): the last one is applied first."""
    result = np.eye(4)
    for matrix in matrices:
        result = result @ matrix
    return result


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 matrix to an (N, 3) array of points."""
    return np.asarray(points, dtype=float) @ matrix[:3, :3].T + matrix[:3, 3]


def transform_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of any linear SimpleITK transform, read off by mapping the origin and unit vectors."""
    matrix = np.eye(4)
    matrix[:3, 3] = transform.TransformPoint((0.0, 0.0, 0.0))
    for axis in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        matrix[:3, axis] = np.array(transform.TransformPoint(unit)) - matrix[:3, 3]
    return matrix


def matrix_to_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """SimpleITK affine transform equal to ``matrix``."""
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(np.asarray(matrix)[:3, :3].ravel().tolist())
    affine.SetTranslation(np.asarray(matrix)[:3, 3].tolist())
    return affine


def distances(matrix_a: np.ndarray, matrix_b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per-point distance (mm) between where two transforms send ``points``."""
    return np.linalg.norm(apply(matrix_a, points) - apply(matrix_b, points), axis=1)


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Angle of the rotation part (degrees)."""
    cos = np.clip((np.trace(matrix[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def random_unit_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` directions uniformly distributed on the sphere."""
    vectors = rng.normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
