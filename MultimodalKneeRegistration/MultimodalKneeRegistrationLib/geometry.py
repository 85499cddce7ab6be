"""World-space geometry of image grids and linear transforms (numpy only).

Why: every decision the planner makes (which image is the fine one, which part of the large image
to keep, whether the images overlap at all) is a question about where voxels lie in physical space.
Conventions: ITK/SimpleITK physical space is LPS; Slicer's is RAS (x and y negated). A registration
transform maps *fixed-space points to moving-space points* (ITK's resampling convention, what
BRAINSFit's ``--linearTransform`` writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

#: Converts LPS <-> RAS (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in physical (LPS) millimetres."""

    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def around(cls, points: np.ndarray) -> Box:
        """The smallest box holding ``points`` (N, 3)."""
        return cls(points.min(axis=0), points.max(axis=0))

    @property
    def size(self) -> np.ndarray:
        return np.maximum(self.upper - self.lower, 0.0)

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    def intersect(self, other: Box) -> Box:
        return Box(np.maximum(self.lower, other.lower), np.minimum(self.upper, other.upper))

    def grow(self, margin_mm: float) -> Box:
        return Box(self.lower - margin_mm, self.upper + margin_mm)

    def corners(self) -> np.ndarray:
        """The box's 8 corners, shape (8, 3) (``box_corners``)."""
        return box_corners(self.lower, self.upper)

    def to_dict(self) -> dict:
        return {"lower_mm": self.lower.round(3).tolist(), "upper_mm": self.upper.round(3).tolist()}


def mask_on_grid(mask: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """Which voxels of ``grid`` have their centre inside ``mask`` (nearest neighbour), as a boolean
    array shaped like ``grid``'s (k, j, i): a mask drawn on one grid, asked about on another."""
    on_grid = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(on_grid) > 0


def index_to_physical_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 matrix taking continuous voxel indices (i, j, k, 1) to LPS millimetres."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def coarser_grid(image: sitk.Image, spacing: np.ndarray, size: np.ndarray) -> sitk.Image:
    """An empty uint8 grid with ``spacing`` and ``size`` over ``image``'s field of view, same directions.

    Its first voxel's centre sits half the spacing change inside ``image``'s first voxel corner, so
    the two grids share their outer edges when ``size * spacing`` matches.
    """
    old_spacing = np.array(image.GetSpacing())
    spacing = np.asarray(spacing, dtype=float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin((np.array(image.GetOrigin()) + direction @ ((spacing - old_spacing) / 2.0)).tolist())
    return grid


def box_corners(lower, upper) -> np.ndarray:
    """The 8 corners of the box from ``lower`` to ``upper`` (any space), shape (8, 3), x slowest.

    The one definition of a box's corners: image fields of view, ROIs, masks' bounding boxes.
    """
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def corner_points(image: sitk.Image) -> np.ndarray:
    """The 8 corners of the image's voxel *edges* (not centres) in LPS, shape (8, 3)."""
    size = np.array(image.GetSize()[:3], dtype=float)
    return apply_matrix(index_to_physical_matrix(image), box_corners(-0.5 * np.ones(3), size - 0.5))


def physical_box(image: sitk.Image) -> Box:
    """Axis-aligned bounding box of the image's field of view in LPS."""
    return Box.around(corner_points(image))


def field_of_view_volume(image: sitk.Image) -> float:
    """The volume (mm^3) the image covers: its voxels times one voxel's volume.

    Why not ``physical_box(image).volume``: that is the LPS box around the grid, up to 5x larger for
    a turned cube, so the plan's sampling, working spacing and search spacing depended on how the
    header happened to be turned (a 20 mm cube at 8 mL counted as 14-22 mL, and its metric got a
    third to two thirds of the samples the plan named).
    """
    return float(np.prod(np.array(image.GetSize()[:3], dtype=float) * np.array(image.GetSpacing()[:3])))


def image_center(image: sitk.Image) -> np.ndarray:
    """Physical centre of the field of view (LPS)."""
    size = np.array(image.GetSize()[:3], dtype=float)
    return apply_matrix(index_to_physical_matrix(image), ((size - 1.0) / 2.0)[None, :])[0]


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to an (N, 3) array of points."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def transform_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of a linear SimpleITK transform (any composite of linear transforms).

    Example:
        >>> transform_to_matrix(sitk.TranslationTransform(3, (1, 2, 3)))[:3, 3]
        array([1., 2., 3.])
    """
    origin = np.zeros(3)
    matrix = np.eye(4)
    matrix[:3, 3] = transform.TransformPoint(origin.tolist())
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        matrix[:3, axis] = np.array(transform.TransformPoint(unit.tolist())) - matrix[:3, 3]
    return matrix


_DEFORMABLE_WORDS = ("BSpline", "DisplacementField", "Kernel", "ThinPlate", "Velocity", "Spline")


def deformable_parts(transform: sitk.Transform) -> list:
    """Class names of the non-linear parts of ``transform`` (composites are opened).

    Checked by class, not on sample points: a B-spline or displacement field that happens to be
    zero where it is probed (or outside its grid) would otherwise pass for an identity.
    """
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        return [
            part
            for k in range(composite.GetNumberOfTransforms())
            for part in deformable_parts(composite.GetNthTransform(k))
        ]
    name = transform.GetName()
    return [name] if any(word in name for word in _DEFORMABLE_WORDS) else []


def is_linear(transform: sitk.Transform, tolerance_mm: float = 1e-4) -> bool:
    """True when ``transform`` is affine: no deformable part by class, and affine on probe points."""
    if deformable_parts(transform):
        return False
    matrix = transform_to_matrix(transform)
    probe = np.array([[37.0, -81.0, 12.5], [-150.0, 220.0, -90.0], [5.0, 5.0, 300.0]])
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in probe])
    return bool(np.abs(mapped - apply_matrix(matrix, probe)).max() <= tolerance_mm)


def affine_from_matrix(matrix: np.ndarray, center: Sequence[float] | None = None) -> sitk.AffineTransform:
    """SimpleITK affine transform equal to the 4x4 ``matrix`` (optionally with a rotation centre)."""
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    if center is not None:
        c = np.asarray(center, dtype=float)
        affine.SetCenter(c.tolist())
        affine.SetTranslation((matrix[:3, 3] + matrix[:3, :3] @ c - c).tolist())
    else:
        affine.SetTranslation(matrix[:3, 3].tolist())
    return affine


def rigid_from_matrix(matrix: np.ndarray, center: Sequence[float]) -> sitk.VersorRigid3DTransform:
    """VersorRigid3DTransform about ``center`` equal to the closest rigid motion to ``matrix``.

    The rotation is the orthogonal polar factor (SVD), so a slightly non-orthogonal matrix read from
    a file still gives a proper rotation.
    """
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] *= -1
        rotation = u @ vt
    c = np.asarray(center, dtype=float)
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter(c.tolist())
    transform.SetMatrix(rotation.ravel().tolist())
    transform.SetTranslation((matrix[:3, 3] - c + rotation @ c).tolist())
    return transform


def as_versor(transform: sitk.Transform) -> sitk.VersorRigid3DTransform:
    """The rigid transform handed back by ``ImageRegistrationMethod.Execute`` (maybe a composite)."""
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return sitk.VersorRigid3DTransform(transform)


def is_rigid_matrix(matrix: np.ndarray, tolerance: float = 1e-6) -> bool:
    """True when the 3x3 part of ``matrix`` is a proper rotation (no scale, shear or mirror)."""
    rotation = matrix[:3, :3]
    return bool(np.allclose(rotation @ rotation.T, np.eye(3), atol=tolerance) and np.linalg.det(rotation) > 0)


def transform_from_matrix(matrix: np.ndarray, center: Sequence[float] = (0.0, 0.0, 0.0)) -> sitk.Transform:
    """A rigid (VersorRigid3D) transform when ``matrix`` is rigid, else an affine one, about ``center``."""
    if is_rigid_matrix(matrix):
        return rigid_from_matrix(matrix, center)
    return affine_from_matrix(matrix, center)


def inverse_transform(transform: sitk.Transform) -> sitk.Transform:
    """The exact inverse of a linear transform (rigid stays rigid)."""
    return transform_from_matrix(np.linalg.inv(transform_to_matrix(transform)))


def turned_about(matrix: np.ndarray, rotation_vector: Sequence[float], center: Sequence[float]) -> np.ndarray:
    """``matrix`` preceded by a turn of ``rotation_vector`` (axis * radians) about ``center``."""
    turn = np.eye(4)
    turn[:3, :3] = rotation_matrix(np.asarray(rotation_vector, dtype=float))
    turn[:3, 3] = np.asarray(center, dtype=float) - turn[:3, :3] @ np.asarray(center, dtype=float)
    return matrix @ turn


def shifted_by(matrix: np.ndarray, delta: Sequence[float]) -> np.ndarray:
    """A copy of the 4x4 ``matrix`` whose translation is moved by ``delta`` (mm): the same pose, shifted."""
    moved = np.array(matrix, dtype=float)
    moved[:3, 3] += np.asarray(delta, dtype=float)
    return moved


def lps_matrix_to_ras(matrix_lps: np.ndarray) -> np.ndarray:
    """Express a point-mapping matrix given in LPS coordinates in RAS coordinates."""
    return LPS_TO_RAS @ matrix_lps @ LPS_TO_RAS


ras_matrix_to_lps = lps_matrix_to_ras  # the conversion is its own inverse


def rotation_matrix(rotation_vector: np.ndarray) -> np.ndarray:
    """3x3 rotation about ``rotation_vector`` by its length in radians (Rodrigues' formula)."""
    rotation_vector = np.asarray(rotation_vector, dtype=float)
    angle = float(np.linalg.norm(rotation_vector))
    if angle < 1e-12:
        return np.eye(3)
    k = rotation_vector / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Rotation angle of the closest rotation to the 3x3 part of ``matrix`` (degrees)."""
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rotation = u @ vt
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def scale_factors(matrix: np.ndarray) -> np.ndarray:
    """Singular values of the 3x3 part: 1 for rigid transforms."""
    return np.linalg.svd(matrix[:3, :3], compute_uv=False)


def point_distances(
    transform_a: sitk.Transform, transform_b: sitk.Transform, points: np.ndarray
) -> np.ndarray:
    """Distances (mm) between where two linear transforms send each of ``points``."""
    a = apply_matrix(transform_to_matrix(transform_a), points)
    b = apply_matrix(transform_to_matrix(transform_b), points)
    return np.linalg.norm(a - b, axis=1)


def overlap_fraction(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None = None, samples_per_axis: int = 12
) -> float:
    """Fraction of the fixed field of view whose points map inside the moving field of view.

    Sampled on a regular grid of voxel-centre positions, so it works for oblique grids too.
    """
    size = np.array(fixed.GetSize()[:3], dtype=float)
    axes = [np.linspace(0, s - 1, min(samples_per_axis, int(s))) for s in size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points = apply_matrix(index_to_physical_matrix(fixed), grid)
    if transform is not None:
        points = apply_matrix(transform_to_matrix(transform), points)
    inverse = np.linalg.inv(index_to_physical_matrix(moving))
    index = apply_matrix(inverse, points)
    msize = np.array(moving.GetSize()[:3], dtype=float)
    inside = np.all((index >= -0.5) & (index <= msize - 0.5), axis=1)
    return float(inside.mean())
