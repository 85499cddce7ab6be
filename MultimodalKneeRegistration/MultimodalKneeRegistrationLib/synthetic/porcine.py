"""The porcine CT/MR pair as a source of generated cases: images, answer, tissue points, cubes.

Why: the pair (``shared/data/porcine_ct_mr``: a CT and an MR T2 of the same specimen, with a
bone-aligned CT -> MR reference) is the only real multimodal pair with a trusted answer. Cases
derived from it keep that answer exactly: a micro-CT-like cube is resampled from the CT *in the
CT's own physical space*, so CT -> MR stays the reference, and the MR (or the cube) then only has
its header moved (see ``poses``). The reference itself is trusted to ~2 mm (the data set's README),
so 2.5 mm mean over tissue is the honest success limit on these cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import apply_matrix, corner_points, index_to_physical_matrix, transform_to_matrix
from .microct_look import BONE_HU, LOOKS, add_microct_look, storage_zero, to_storage
from .phantom import make_grid

#: HU above which a CT voxel counts as inside the specimen (soft tissue and bone, not air).
SPECIMEN_HU = -300.0


def specimen_points(ct: sitk.Image, block_mm: float = 4.0) -> np.ndarray:
    """Centres (LPS, (N, 3)) of ~``block_mm`` blocks whose mean is above -300 HU, largest piece only.

    Where registration errors are measured: inside the tissue, never in the air around it.

    Example:
        >>> points = specimen_points(sitk.ReadImage("CT.nrrd"), block_mm=4.0)
    """
    factors = [max(1, int(round(block_mm / s))) for s in ct.GetSpacing()]
    coarse = sitk.BinShrink(ct, factors)
    mask = sitk.Cast(coarse, sitk.sitkFloat32) > SPECIMEN_HU
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(mask)) == 1
    index = np.argwhere(sitk.GetArrayViewFromImage(largest))[:, ::-1].astype(float)
    return apply_matrix(index_to_physical_matrix(coarse), index)


def cube_grid(center: Sequence[float], side_mm: float, spacing_mm: float, direction: np.ndarray) -> sitk.Image:
    """An empty cubic grid of ``side_mm`` at ``spacing_mm`` centred on ``center`` with ``direction``."""
    count = max(2, int(round(side_mm / spacing_mm)))
    return make_grid((count,) * 3, (spacing_mm,) * 3, None, np.asarray(direction).ravel(), center)


def inside_grid(grid: sitk.Image, points: np.ndarray, inset_mm: float = 0.0) -> np.ndarray:
    """Mask of ``points`` at least ``inset_mm`` inside ``grid``'s field of view (oblique grids too)."""
    index = apply_matrix(np.linalg.inv(index_to_physical_matrix(grid)), points)
    inset = inset_mm / np.array(grid.GetSpacing())
    size = np.array(grid.GetSize(), dtype=float)
    return np.all((index >= -0.5 + inset) & (index <= size - 0.5 - inset), axis=1)


@dataclass
class PorcineSources:
    """The pair, loaded once on first use; ``data_dir`` holds CT.nrrd, MR_T2.nrrd and the reference.

    Example:
        >>> sources = PorcineSources(Path("../shared/data/porcine_ct_mr"))
        >>> sources.reference  # CT LPS -> MR LPS, 4x4
    """

    data_dir: Path
    reference_file: Optional[Path] = None
    _cache: Dict[str, object] = field(default_factory=dict, repr=False)

    def _get(self, name: str, build):
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    def _read(self, filename: str) -> sitk.Image:
        path = Path(self.data_dir) / filename
        if not path.is_file():
            raise InputError(f"porcine data file '{path}' not found",
                             "point the case family at the porcine_ct_mr folder (MKR_SHARED_DATA)")
        return sitk.ReadImage(str(path))

    @property
    def ct(self) -> sitk.Image:
        return self._get("ct", lambda: self._read("CT.nrrd"))

    @property
    def mr(self) -> sitk.Image:
        return self._get("mr", lambda: self._read("MR_T2.nrrd"))

    @property
    def reference(self) -> np.ndarray:
        """The CT -> MR answer (4x4, LPS), from ``reference_file`` or the folder's reference_ct_to_mr.tfm."""
        path = Path(self.reference_file or Path(self.data_dir) / "reference_ct_to_mr.tfm")
        return self._get("reference", lambda: transform_to_matrix(sitk.ReadTransform(str(path))))

    def ct_shrunk(self, factor: int) -> sitk.Image:
        """The CT block-averaged ``factor`` x per axis (same physical space)."""
        if factor <= 1:
            return self.ct
        return self._get(f"ct{factor}", lambda: sitk.BinShrink(self.ct, [factor] * 3))

    def tissue_points(self, block_mm: float) -> np.ndarray:
        """``specimen_points`` of the CT at ``block_mm`` (cached): where errors are measured."""
        return self._get(f"points{block_mm:g}", lambda: specimen_points(self.ct, block_mm))

    @property
    def coarse_ct(self) -> sitk.Image:
        """The CT block-averaged to ~2 mm, as float: for bone anchors and bone fractions."""
        factors = [max(1, int(round(2.0 / s))) for s in self.ct.GetSpacing()]
        return self._get("coarse", lambda: sitk.Cast(sitk.BinShrink(self.ct, factors), sitk.sitkFloat32))

    @property
    def bone_points(self) -> np.ndarray:
        """Centres of the ~2 mm CT blocks above ``BONE_HU``: anchors for cubes that contain bone."""

        def build() -> np.ndarray:
            coarse = self.coarse_ct
            index = np.argwhere(sitk.GetArrayViewFromImage(coarse) > BONE_HU)[:, ::-1].astype(float)
            return apply_matrix(index_to_physical_matrix(coarse), index)

        return self._get("bone", build)

    def bone_fraction(self, grid: sitk.Image, samples: int = 16) -> float:
        """Fraction of ``grid``'s field of view above ``BONE_HU`` (CT sampled on ``samples``^3 points)."""
        spacing = np.array(grid.GetSpacing()) * np.array(grid.GetSize()) / samples
        probe = make_grid((samples,) * 3, spacing, None, grid.GetDirection(), _grid_center(grid))
        values = sitk.Resample(self.coarse_ct, probe, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        return float((sitk.GetArrayViewFromImage(values) > BONE_HU).mean())

    def contains(self, grid: sitk.Image) -> bool:
        """True when ``grid``'s field of view lies inside the CT's (no padded air in a cube)."""
        return bool(np.all(inside_grid(self.ct, corner_points(grid))))


def _grid_center(grid: sitk.Image) -> np.ndarray:
    middle = (np.array(grid.GetSize(), dtype=float) - 1.0) / 2.0
    return apply_matrix(index_to_physical_matrix(grid), middle[None])[0]


def cut_cube(ct: sitk.Image, grid: sitk.Image, noise_hu: float, units: str, seed: int,
             look: str = "ct") -> sitk.Image:
    """The CT resampled (linear) onto ``grid``, with noise, stored as ``units`` (``microct_look.UNITS``).

    The cube stays in the CT's physical space, so the CT's answer is the cube's answer. A resampled
    CT is smoother than a real micro-CT: with ``look="ct"`` mild Gaussian noise (``noise_hu``) gives
    it some texture back; ``look="microct"`` adds trabecular texture, cupping, rings and voxel noise
    and zeroes the voxels outside the reconstruction cylinder (``microct_look``).

    Example:
        >>> cube = cut_cube(sources.ct, cube_grid(center, 30.0, 0.1, np.eye(3)), 30.0, "uint8", 7, "microct")
    """
    if look not in LOOKS:
        raise ValueError(f"unknown cube look {look!r}: use one of {LOOKS}")
    hu = sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(hu)
    del hu
    outside = None
    if look == "microct":
        outside = add_microct_look(array, grid.GetSpacing()[0], noise_hu, seed)
    elif noise_hu > 0:
        rng = np.random.default_rng(seed)
        array += rng.normal(0.0, noise_hu, size=array.shape).astype(np.float32)
    stored = to_storage(array, units)
    del array
    if outside is not None:
        stored[:, outside] = storage_zero(units)
    cube = sitk.GetImageFromArray(stored)
    cube.CopyInformation(grid)
    return cube
