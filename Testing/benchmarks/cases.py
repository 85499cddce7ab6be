"""Benchmark cases built from the porcine CT/MR pair, each with a KNOWN fixed -> moving answer.

Why: the pair's reference (CT -> MR, LPS) is the only answer we have, so every variant is derived
from it exactly: moving an image's header by a pose P (the voxel once at y now lies at P(y)) turns
the reference ``ref`` into ``P @ ref``; swapping fixed and moving inverts it. No case resamples the
MR, so the answers carry no interpolation error. The CT side may be block-averaged (CT 4x) or
resampled into a micro-CT-like cube, both in the CT's own space, so the answer stays ``ref``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.synthetic.porcine import specimen_points
from rigid import apply, compose, moved_image, pose, random_unit_vectors, rotation_matrix, transform_to_matrix

#: Micro-CT-like cube: side (mm), spacing (mm), intensity units per HU, noise (HU).
MICROCT_SIDE_MM = 48.0
MICROCT_SPACING_MM = 0.15
MICROCT_UNITS_PER_HU = 10.0
MICROCT_NOISE_HU = 20.0
#: Margin (mm) of the "drawn by eye" MR ROI used by the forum's tuned BRAINSFit recipe.
TUNED_ROI_MARGIN_MM = 20.0


@dataclass(frozen=True)
class PairData:
    """The real pair as loaded once by the parent process."""

    ct_path: Path
    mr_path: Path
    ct: sitk.Image
    mr: sitk.Image
    reference: np.ndarray  # CT LPS -> MR LPS
    specimen_points: np.ndarray  # CT space, (N, 3)
    specimen_center: np.ndarray  # CT space

    @property
    def bone_center(self) -> np.ndarray:
        return _bone_center(self.ct)


@dataclass
class Case:
    """One registration problem: two files, the known answer and where to measure errors."""

    name: str
    description: str
    fixed_file: Path
    moving_file: Path
    fixed_kind: str  # "CT", "CT 4x", "micro-CT", "MR"
    moving_kind: str
    truth: np.ndarray  # fixed LPS -> moving LPS
    points: np.ndarray  # fixed space, inside the specimen
    presets: Tuple[str, ...]
    fine_side: str  # "fixed" or "moving": the CT-like image
    tuned_shrink: int  # block size giving the tuned recipe's 8x-native spacing
    tuned_roi: Tuple[List[float], List[float]]  # MR-space box (lower, upper) for the tuned recipe
    fine_bytes: int
    fixed_voxels: int
    start_angle_deg: float = float("nan")
    start_translation_mm: float = float("nan")
    extra: Dict[str, float] = field(default_factory=dict)

    def job_inputs(self) -> dict:
        return {
            "fixed": str(self.fixed_file),
            "moving": str(self.moving_file),
            "fine_side": self.fine_side,
            "tuned_shrink": self.tuned_shrink,
            "tuned_roi": [list(map(float, self.tuned_roi[0])), list(map(float, self.tuned_roi[1]))],
            "mr_side": "moving" if self.fine_side == "fixed" else "fixed",
        }


def load_pair(data_dir: Path, reference_file: Path | None = None) -> PairData:
    """Read CT, MR and the CT -> MR answer (default: the data set's own file); find the specimen."""
    ct_path, mr_path = data_dir / "CT.nrrd", data_dir / "MR_T2.nrrd"
    ct, mr = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(mr_path))
    reference_file = reference_file or data_dir / "reference_ct_to_mr.tfm"
    reference = transform_to_matrix(sitk.ReadTransform(str(reference_file)))
    points = specimen_points(ct)
    return PairData(ct_path, mr_path, ct, mr, reference, points, points.mean(axis=0))


def _bone_center(ct: sitk.Image) -> np.ndarray:
    coarse = sitk.BinShrink(ct, [4, 4, 3])
    index = np.argwhere(sitk.GetArrayViewFromImage(coarse) > 400)[:, ::-1].astype(float)
    matrix = np.array(coarse.GetDirection()).reshape(3, 3) @ np.diag(coarse.GetSpacing())
    return (index @ matrix.T + np.array(coarse.GetOrigin())).mean(axis=0)


def write_image(image: sitk.Image, path: Path) -> Path:
    """Uncompressed NRRD (fast to read for every tool)."""
    sitk.WriteImage(image, str(path), useCompression=False)
    return path


def box_corners(lower: Sequence[float], upper: Sequence[float]) -> np.ndarray:
    return np.array(
        [[x, y, z] for x in (lower[0], upper[0]) for y in (lower[1], upper[1]) for z in (lower[2], upper[2])]
    )


@dataclass(frozen=True)
class Geometry:
    """Grid of an image (or of a file not loaded): enough for corners and byte counts."""

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    bytes_per_voxel: int
    direction: Tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(
            tuple(image.GetSize()),
            tuple(image.GetSpacing()),
            tuple(image.GetOrigin()),
            image.GetSizeOfPixelComponent(),
            tuple(image.GetDirection()),
        )

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size))

    @property
    def nbytes(self) -> int:
        return self.voxels * self.bytes_per_voxel

    def corners(self) -> np.ndarray:
        size = np.array(self.size, dtype=float)
        idx = box_corners(-0.5 * np.ones(3), size - 0.5)
        matrix = np.array(self.direction).reshape(3, 3) @ np.diag(self.spacing)
        return idx @ matrix.T + np.array(self.origin)


def _roi_in_mr(fine: Geometry, fine_to_mr: np.ndarray) -> Tuple[List[float], List[float]]:
    """The fine image's footprint in MR space plus a margin: the ROI a user draws by eye.

    It is derived from the known answer, so it flatters the tuned recipe (a user's box is rougher).
    """
    corners = apply(fine_to_mr, fine.corners())
    return ((corners.min(0) - TUNED_ROI_MARGIN_MM).tolist(), (corners.max(0) + TUNED_ROI_MARGIN_MM).tolist())


def make_case(
    name: str,
    description: str,
    ct_like: Geometry,
    ct_file: Path,
    ct_kind: str,
    ct_points: np.ndarray,
    mr: sitk.Image,
    reference: np.ndarray,
    mr_pose: Optional[np.ndarray],
    work_dir: Path,
    mr_fixed: bool,
    presets: Tuple[str, ...],
    native_factor: int,
) -> Case:
    """A case whose MR header is moved by ``mr_pose`` (None: as scanned), CT- or MR-fixed.

    The CT -> MR' answer is ``mr_pose @ reference``; MR-fixed cases use its inverse and measure at
    the same specimen points mapped into MR' space.
    """
    ct_to_mr = compose(mr_pose, reference) if mr_pose is not None else reference
    mr_file = work_dir / f"mr_{name}.nrrd"
    write_image(moved_image(mr, mr_pose) if mr_pose is not None else mr, mr_file)
    roi = _roi_in_mr(ct_like, ct_to_mr)
    common = dict(
        name=name,
        description=description,
        presets=presets,
        tuned_shrink=max(1, int(round(8 / native_factor))),
        tuned_roi=roi,
        fine_bytes=ct_like.nbytes,
    )
    if mr_fixed:
        return Case(
            fixed_file=mr_file,
            fixed_voxels=int(np.prod(mr.GetSize())),
            moving_file=ct_file,
            fixed_kind="MR",
            moving_kind=ct_kind,
            truth=np.linalg.inv(ct_to_mr),
            points=apply(ct_to_mr, ct_points),
            fine_side="moving",
            **common,
        )
    return Case(
        fixed_file=ct_file,
        fixed_voxels=ct_like.voxels,
        moving_file=mr_file,
        fixed_kind=ct_kind,
        moving_kind="MR",
        truth=ct_to_mr,
        points=ct_points,
        fine_side="fixed",
        **common,
    )


def offset_pose(
    angle_deg: float, translation_mm: float, axis: np.ndarray, direction: np.ndarray, center: np.ndarray
) -> np.ndarray:
    """Rotation by ``angle_deg`` about ``axis`` through ``center``, then ``translation_mm`` along ``direction``."""
    return pose(rotation_matrix(axis, angle_deg), translation_mm * direction, center)


def downsampled_ct(pair: PairData, factor: int, work_dir: Path) -> Tuple[sitk.Image, Path]:
    """The CT block-averaged ``factor`` x per axis (as the reference's ANTs/elastix runs used)."""
    path = work_dir / f"ct{factor}x.nrrd"
    image = sitk.BinShrink(pair.ct, [factor] * 3)
    if not path.exists():
        write_image(image, path)
    return image, path


def cube_geometry(center: np.ndarray, side_mm: float, spacing_mm: float) -> Tuple[List[int], List[float]]:
    count = int(round(side_mm / spacing_mm))
    origin = (np.asarray(center) - side_mm / 2.0 + spacing_mm / 2.0).tolist()
    return [count] * 3, origin


def write_microct(
    ct: sitk.Image, center: np.ndarray, side_mm: float, spacing_mm: float, path: Path, seed: int = 7, slab: int = 32
) -> Geometry:
    """Resample a cube of the CT to micro-CT spacing as uint16 "scanner units", slab by slab.

    Units are (HU + 1024) * 10 plus Gaussian noise: micro-CT data are rarely in HU, and a resampled
    CT would otherwise be unrealistically smooth. The file is written in slabs of ``slab`` slices
    so that a 1 GB volume never exists twice in memory. Returns the cube's geometry.
    """
    size, origin = cube_geometry(center, side_mm, spacing_mm)
    rng = np.random.default_rng(seed)
    header = (
        "NRRD0004\ntype: uint16\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {size[0]} {size[1]} {size[2]}\n"
        f"space directions: ({spacing_mm},0,0) (0,{spacing_mm},0) (0,0,{spacing_mm})\n"
        "kinds: domain domain domain\nendian: little\nencoding: raw\n"
        f"space origin: ({origin[0]},{origin[1]},{origin[2]})\n\n"
    )
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        for z0 in range(0, size[2], slab):
            depth = min(slab, size[2] - z0)
            slab_origin = [origin[0], origin[1], origin[2] + z0 * spacing_mm]
            part = sitk.Resample(
                ct,
                [size[0], size[1], depth],
                sitk.Transform(),
                sitk.sitkLinear,
                slab_origin,
                [spacing_mm] * 3,
                [1, 0, 0, 0, 1, 0, 0, 0, 1],
                -1024.0,
                sitk.sitkFloat32,
            )
            hu = sitk.GetArrayFromImage(part)
            hu += rng.normal(0.0, MICROCT_NOISE_HU, size=hu.shape).astype(np.float32)
            units = np.clip((hu + 1024.0) * MICROCT_UNITS_PER_HU, 0, 65535).astype("<u2")
            handle.write(units.tobytes())
    return Geometry(tuple(size), (spacing_mm,) * 3, tuple(origin), 2)


def cube_points(points: np.ndarray, center: np.ndarray, side_mm: float, inset_mm: float = 1.0) -> np.ndarray:
    half = side_mm / 2.0 - inset_mm
    inside = np.all(np.abs(points - center) <= half, axis=1)
    return points[inside]


def grid_offsets(
    angles: Sequence[float], translations: Sequence[float], axes_per_cell: int, seed: int = 2024
) -> List[Tuple[float, float, np.ndarray, np.ndarray]]:
    """(angle, translation, rotation axis, translation direction) for every grid cell and axis."""
    rng = np.random.default_rng(seed)
    starts = []
    for angle in angles:
        for translation in translations:
            axes = random_unit_vectors(axes_per_cell, rng)
            directions = random_unit_vectors(axes_per_cell, rng)
            starts.extend((float(angle), float(translation), a, d) for a, d in zip(axes, directions))
    return starts
