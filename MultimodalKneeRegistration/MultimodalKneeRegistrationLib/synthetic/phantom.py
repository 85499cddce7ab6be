"""A synthetic knee defined analytically in LPS space: any grid, two modalities, known transforms.

Why: "it just works" has to be measured against ground truth. The phantom's anatomy (femur, tibia,
fibula, patella with cortex, marrow and cartilage, inside muscle and fat) is a set of smooth shapes
in millimetres, so it renders onto any grid (oblique, flipped, anisotropic) with exact partial-volume
edges, and a moving image rendered through a known transform gives the registration's true answer.
CT and T2-like MRI map the tissues to intensities that are not monotonic in each other, so only
mutual information can align them. The tibia and fibula can be flexed about the knee axis for
per-bone tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import (
    apply_matrix,
    corner_points,
    index_to_physical_matrix,
    is_linear,
    transform_to_matrix,
)

LABELS: Dict[str, int] = {
    "background": 0, "fat": 1, "muscle": 2, "cartilage": 3,
    "femur_cortex": 4, "femur_marrow": 5, "tibia_cortex": 6, "tibia_marrow": 7,
    "fibula_cortex": 8, "fibula_marrow": 9, "patella_cortex": 10, "patella_marrow": 11,
}
#: Bone name -> (cortex label, marrow label).
BONES: Dict[str, Tuple[int, int]] = {
    name: (LABELS[f"{name}_cortex"], LABELS[f"{name}_marrow"])
    for name in ("femur", "tibia", "fibula", "patella")
}
#: Bones that move with the shank when the knee flexes.
SHANK_BONES = ("tibia", "fibula")
#: Centre and axis (LPS, mm) of the knee's flexion axis; the shank rotates about it.
KNEE_CENTER = (0.0, 10.0, 10.0)
KNEE_AXIS = (1.0, 0.0, 0.0)

#: Tissue intensities per modality: CT in HU; MRI T2-like (fat bright, cortical bone black).
INTENSITIES: Dict[str, Dict[str, float]] = {
    "ct": {"air": -1000, "fat": -100, "muscle": 40, "cartilage": 110, "cortex": 1500, "marrow": 300},
    "mri": {"air": 0, "fat": 850, "muscle": 220, "cartilage": 480, "cortex": 25, "marrow": 560},
}
NOISE_SIGMA: Dict[str, float] = {"ct": 20.0, "mri": 18.0}
_PIXEL_TYPE = {"ct": sitk.sitkInt16, "mri": sitk.sitkUInt16}
_TISSUE_OF_LABEL = ["air", "fat", "muscle", "cartilage"] + ["cortex", "marrow"] * len(BONES)


@dataclass(frozen=True)
class _Part:
    """An ellipsoid swept along its local z axis by ``half_length`` mm (a capsule; 0: an ellipsoid)."""

    center: Tuple[float, float, float]
    radii: Tuple[float, float, float]
    half_length: float = 0.0
    shank: bool = False

    def grown(self, mm: float) -> _Part:
        return _Part(self.center, tuple(r + mm for r in self.radii), self.half_length, self.shank)


@dataclass(frozen=True)
class _Shape:
    """A union of parts painted with one label per inset: ((label, inset_mm), ...)."""

    parts: Tuple[_Part, ...]
    paints: Tuple[Tuple[int, float], ...]


def _knee_shapes() -> List[_Shape]:
    """The anatomy in painting order (later shapes cover earlier ones). Superior is +z, anterior -y."""
    thigh = _Part((0, 8, 200), (62, 56, 62), 200)
    shank = _Part((0, 8, -200), (56, 52, 56), 200, shank=True)
    muscles = (
        _Part((0, -6, 95), (42, 30, 70)),  # quadriceps
        _Part((-24, 38, 80), (20, 18, 90)), _Part((24, 38, 80), (20, 18, 90)),  # hamstrings
        _Part((-20, 40, -70), (19, 16, 80), shank=True), _Part((20, 40, -70), (19, 16, 80), shank=True),
        _Part((0, 30, -115), (30, 14, 70), shank=True),  # soleus
        _Part((18, -12, -100), (13, 12, 70), shank=True),  # tibialis anterior
    )
    condyles = (_Part((-19, 12, 14), (15, 22, 14)), _Part((20, 10, 15), (16, 23, 15)))
    femur = (_Part((0, 6, 130), (13, 13, 13), 100), _Part((0, 8, 32), (30, 22, 26))) + condyles
    plateau = _Part((0, 10, -13), (38, 27, 8), shank=True)
    tibia = (
        plateau,
        _Part((0, 12, -32), (28, 22, 22), shank=True),
        _Part((0, -8, -45), (9, 8, 14), shank=True),  # tuberosity
        _Part((0, 12, -140), (12, 12, 12), 100, shank=True),
    )
    fibula = (_Part((30, 22, -30), (9, 9, 10), shank=True), _Part((28, 23, -140), (6, 6, 6), 100, shank=True))
    patella = (_Part((0, -30, 28), (21, 9, 24)),)
    cartilage = tuple(p.grown(2.0) for p in condyles + (plateau,) + patella)

    def bone(name: str, parts: Tuple[_Part, ...], cortex_mm: float) -> _Shape:
        return _Shape(parts, ((BONES[name][0], 0.0), (BONES[name][1], cortex_mm)))

    return [
        _Shape((thigh, shank), ((LABELS["fat"], 0.0),)),
        _Shape(muscles, ((LABELS["muscle"], 0.0),)),
        _Shape(cartilage, ((LABELS["cartilage"], 0.0),)),
        bone("femur", femur, 2.5),
        bone("tibia", tibia, 2.5),
        bone("fibula", fibula, 1.5),
        bone("patella", patella, 1.5),
    ]


def make_grid(size: Sequence[int], spacing: Sequence[float], origin: Optional[Sequence[float]] = None,
              direction: Optional[Sequence[float]] = None,
              center: Optional[Sequence[float]] = None) -> sitk.Image:
    """An empty uint8 image that only carries a grid; without ``origin`` it is centred on ``center``.

    Example:
        >>> make_grid((64, 64, 20), (0.5, 0.5, 2.0), center=(0, 0, 10)).GetOrigin()
        (-15.75, -15.75, -9.0)
    """
    image = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in (direction if direction is not None else np.eye(3).ravel())])
    if origin is None:
        axes = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
        half = axes @ ((np.array(image.GetSize(), dtype=float) - 1.0) / 2.0)
        origin = np.asarray(center if center is not None else (0.0, 0.0, 0.0), dtype=float) - half
    image.SetOrigin([float(o) for o in origin])
    return image


def rigid_transform(axis: Sequence[float], angle_deg: float, translation: Sequence[float],
                    center: Sequence[float] = (0.0, 0.0, 0.0)) -> sitk.VersorRigid3DTransform:
    """A rigid transform rotating ``angle_deg`` about ``axis`` through ``center``, then translating."""
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter([float(c) for c in center])
    a = np.asarray(axis, dtype=float)
    transform.SetRotation((a / np.linalg.norm(a)).tolist(), math.radians(angle_deg))
    transform.SetTranslation([float(t) for t in translation])
    return transform


class KneePhantom:
    """The knee phantom; ``flexion_deg`` rotates tibia, fibula and calf about the knee axis.

    Example:
        >>> ct = KneePhantom().render("ct", (160, 160, 120), (1.0, 1.0, 1.0))
        >>> mr = KneePhantom().render("mri", (80, 80, 30), (2.0, 2.0, 4.0), transform=some_rigid)
    """

    def __init__(self, flexion_deg: float = 0.0, seed: int = 0) -> None:
        self.flexion_deg = float(flexion_deg)
        self.seed = int(seed)
        self._shapes = _knee_shapes()
        unflex = np.linalg.inv(transform_to_matrix(self.flexion_transform()))
        # Per part: matrix taking phantom LPS points to "unit" coordinates where the part is a
        # capsule of radius 1 along z (the shank parts first undo the flexion).
        self._to_unit = [[self._unit_matrix(p, unflex) for p in shape.parts] for shape in self._shapes]

    def flexion_transform(self) -> sitk.Transform:
        """Phantom-space transform taking the extended shank to its flexed pose (shank posterior)."""
        return rigid_transform(KNEE_AXIS, self.flexion_deg, (0.0, 0.0, 0.0), KNEE_CENTER)

    @staticmethod
    def _unit_matrix(part: _Part, unflex: np.ndarray) -> np.ndarray:
        to_unit = np.eye(4)
        to_unit[:3, :3] = np.diag(1.0 / np.asarray(part.radii, dtype=float))
        to_unit[:3, 3] = -np.asarray(part.center, dtype=float) / np.asarray(part.radii, dtype=float)
        return to_unit @ unflex if part.shank else to_unit

    # -- rendering ---------------------------------------------------------------------------------
    def render(self, modality: str, size: Sequence[int], spacing: Sequence[float],
               origin: Optional[Sequence[float]] = None, direction: Optional[Sequence[float]] = None,
               center: Optional[Sequence[float]] = None, transform: Optional[sitk.Transform] = None,
               noise: bool = True) -> sitk.Image:
        """Render ``modality`` ("ct" or "mri") on a new grid; see ``render_like``."""
        grid = make_grid(size, spacing, origin, direction, center)
        return self.render_like(grid, modality, transform, noise)

    def render_like(self, reference: sitk.Image, modality: str, transform: Optional[sitk.Transform] = None,
                    noise: bool = True) -> sitk.Image:
        """Render onto ``reference``'s grid; grid point x shows the phantom at ``transform(x)``.

        So a moving image rendered with ``transform = T.GetInverse()`` has the known fixed->moving
        transform ``T`` (for fixed rendered without a transform). Example:
            >>> mr = KneePhantom().render_like(mr_grid, "mri", true_transform.GetInverse())
        """
        if modality not in INTENSITIES:
            raise InputError(f"unknown phantom modality {modality!r}", f"use one of {', '.join(INTENSITIES)}")
        values = np.array([INTENSITIES[modality][t] for t in _TISSUE_OF_LABEL], dtype=np.float32)
        shape = tuple(reversed(reference.GetSize()))
        signal = np.full(shape, values[0], dtype=np.float32)
        for label, fraction, where in self._paint(reference, transform):
            part = signal[where]
            part += fraction * (values[label] - part)
            signal[where] = part
        if noise:
            signal = self._add_noise(signal, reference, modality)
        image = sitk.GetImageFromArray(np.round(signal))
        image.CopyInformation(reference)
        return sitk.Cast(image, _PIXEL_TYPE[modality])

    def labels(self, size: Sequence[int], spacing: Sequence[float], origin: Optional[Sequence[float]] = None,
               direction: Optional[Sequence[float]] = None, center: Optional[Sequence[float]] = None,
               transform: Optional[sitk.Transform] = None) -> sitk.Image:
        """The label map (``LABELS``) at voxel centres of a new grid; same arguments as ``render``."""
        return self.labels_like(make_grid(size, spacing, origin, direction, center), transform)

    def labels_like(self, reference: sitk.Image, transform: Optional[sitk.Transform] = None) -> sitk.Image:
        """The label map at the voxel centres of ``reference``'s grid (see ``render_like``)."""
        labels = np.zeros(tuple(reversed(reference.GetSize())), dtype=np.uint8)
        for label, fraction, where in self._paint(reference, transform, hard=True):
            part = labels[where]
            part[fraction > 0.5] = label
            labels[where] = part
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(reference)
        return image

    def label_at(self, points: np.ndarray, transform: Optional[sitk.Transform] = None) -> np.ndarray:
        """Labels at (N, 3) LPS points (phantom evaluated at ``transform(point)``)."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        labels = np.zeros(len(points), dtype=np.uint8)
        to_phantom = _linear_matrix(transform, points[:: max(1, len(points) // 64)])
        for label, inside in self._evaluate(to_phantom, np.eye(4), points.T[:, :, None], None):
            labels[inside.ravel() > 0.5] = label
        return labels

    # -- implementation ----------------------------------------------------------------------------
    def _paint(self, reference: sitk.Image, transform: Optional[sitk.Transform],
               hard: bool = False, slab: int = 8) -> Iterator[Tuple[int, np.ndarray, tuple]]:
        """(label, fraction, slab index) for each painted layer, a few slices at a time."""
        to_phantom = _linear_matrix(transform, corner_points(reference))
        index_to_lps = index_to_physical_matrix(reference)
        voxel_edges = None if hard else index_to_lps[:3, :3]
        nx, ny, nz = reference.GetSize()
        ii = np.arange(nx, dtype=np.float32)[None, None, :]
        jj = np.arange(ny, dtype=np.float32)[None, :, None]
        for k0 in range(0, nz, slab):
            kk = np.arange(k0, min(nz, k0 + slab), dtype=np.float32)[:, None, None]
            for label, fraction in self._evaluate(to_phantom, index_to_lps, (ii, jj, kk), voxel_edges):
                yield label, fraction, (slice(k0, k0 + slab),)

    def _evaluate(self, to_phantom: np.ndarray, to_lps: np.ndarray, coords,
                  voxel_edges: Optional[np.ndarray]) -> Iterator[Tuple[int, np.ndarray]]:
        """Fractions of each layer at ``coords`` (three broadcastable arrays, mapped by ``to_lps``).

        Each part is the set g < 0 of g = |u - clamp(u_z)| - 1 in its unit coordinates u. Its signed
        distance is approximated by g / |grad g| (exact on the axes), and with ``voxel_edges`` the
        partial-volume fraction is the box-filter ramp 0.5 - (distance + inset) / width, where
        width is the voxel's extent along the surface normal (exact for grid-aligned planes).
        """
        edge_norm = 0.0 if voxel_edges is None else float(np.linalg.norm(voxel_edges, 2))
        for shape, unit_matrices in zip(self._shapes, self._to_unit):
            insets = [inset for _, inset in shape.paints]
            layers = [np.zeros((), dtype=np.float32) for _ in shape.paints]
            for part, to_unit in zip(shape.parts, unit_matrices):
                phys = to_unit @ to_phantom  # LPS of the rendered grid -> unit coordinates
                full = phys @ to_lps  # coordinates (index or LPS) -> unit coordinates
                u = [full[r, 0] * coords[0] + full[r, 1] * coords[1] + (full[r, 2] * coords[2] + full[r, 3])
                     for r in range(3)]
                h = part.half_length / part.radii[2]
                u[2] = u[2] - np.clip(u[2], -h, h)
                radius = np.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
                g = radius - 1.0
                max_grad = float(np.linalg.norm(phys[:3, :3], 2))
                band = 0.5 * edge_norm * max_grad
                near = (g < band + 1e-6) & (g > -(max(insets) * max_grad + band))
                idx = np.nonzero(near)
                unit_normal = np.stack([c[idx] for c in u], axis=1) / np.maximum(radius[idx], 1e-9)[:, None]
                grad_lps = np.linalg.norm(unit_normal @ phys[:3, :3], axis=1)
                if voxel_edges is not None:
                    grad_grid = np.linalg.norm(unit_normal @ full[:3, :3], axis=1)
                for n, inset in enumerate(insets):
                    fraction = (g < 0).astype(np.float32)
                    level = g[idx] + inset * grad_lps
                    if voxel_edges is None:
                        fraction[idx] = level < 0
                    else:
                        fraction[idx] = np.clip(0.5 - level / np.maximum(grad_grid, 1e-9), 0.0, 1.0)
                    layers[n] = np.maximum(layers[n], fraction)
            for (label, _), fraction in zip(shape.paints, layers):
                if fraction.ndim:
                    yield label, fraction

    def _add_noise(self, signal: np.ndarray, reference: sitk.Image, modality: str) -> np.ndarray:
        """CT: Gaussian noise. MRI: a smooth bias field (the coil) and Rician magnitude noise."""
        rng = np.random.default_rng([self.seed, list(INTENSITIES).index(modality)])
        sigma = np.float32(NOISE_SIGMA[modality])
        if modality == "ct":
            return signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        nz, ny, nx = signal.shape
        to_lps = index_to_physical_matrix(reference)
        center = apply_matrix(to_lps, np.array([[(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]]))[0]
        slope = np.array([0.0025, -0.0018, 0.0012])  # per mm: a few percent per centimetre
        di, dj, dk = slope @ to_lps[:3, :3]
        ramp = (np.float32(di) * np.arange(nx, dtype=np.float32)[None, None, :]
                + np.float32(dj) * np.arange(ny, dtype=np.float32)[None, :, None]
                + np.float32(dk) * np.arange(nz, dtype=np.float32)[:, None, None]
                + np.float32(slope @ (to_lps[:3, 3] - center)))
        signal = signal * np.exp(np.clip(ramp, -0.4, 0.4)).astype(np.float32)
        real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        return np.sqrt(real * real + imaginary * imaginary)


def _linear_matrix(transform: Optional[sitk.Transform], probes: np.ndarray) -> np.ndarray:
    """The 4x4 matrix of ``transform``, checked to be linear where it is used (at ``probes``)."""
    if transform is None:
        return np.eye(4)
    matrix = transform_to_matrix(transform)
    mapped = np.array([transform.TransformPoint(p) for p in probes.tolist()])
    if not is_linear(transform) or np.abs(mapped - apply_matrix(matrix, probes)).max() > 1e-4:
        raise InputError("the phantom renders through linear transforms only",
                         "pass a rigid or affine transform")
    return matrix
