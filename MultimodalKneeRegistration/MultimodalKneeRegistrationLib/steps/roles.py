"""Which image plays which part: the one place the pair's roles are worked out and named.

Why: the ``auto`` preset, the plan and the inspection each asked "which image is the fine one, which
covers more?" on their own, with their own names. The roles are:

- ``fine`` / ``coarse``: the image with the smaller / larger voxel volume (ties: fixed is fine). The
  fine one is block-averaged to the working spacing (Crop Volume's spacing multiplier).
- ``small`` / ``large``: the image whose LPS box (the axis-aligned box around its grid) is the
  smaller / larger (ties: fixed is large). The box, not the volume the grid covers: judging by that
  volume flipped the roles of full CT/MR pairs whose CT was turned in its header (a turned CT's box
  was 3x its 10 L), and two right answers there were refused by the verdict, whose limits were
  measured with these roles. The volume (``fov``) is what the plan's sampling and spacings use.
  The metric samples the small one (so its samples land inside the other) and the large one is
  cropped to its footprint: in ``pipeline.WorkingPair`` the small one is ``sampled`` and the large
  one ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from ..geometry import field_of_view_volume, physical_box


def voxel_volume(image) -> float:
    """One voxel's volume (mm^3)."""
    return float(np.prod(image.GetSpacing()))


@dataclass(frozen=True)
class ImageRoles:
    """The roles of ``fixed`` and ``moving`` (each role is "fixed" or "moving"), from geometry only.

    Example:
        >>> roles = ImageRoles.of(mr, microct)  # doctest: +SKIP
        >>> roles.fine, roles.small  # doctest: +SKIP
        ('moving', 'moving')
    """

    images: Dict[str, Any]
    fine: str
    coarse: str
    large: str
    small: str
    #: The coarse voxel's edge over the fine one's (cube root of the voxel volume ratio).
    ratio: float
    #: Each image's field of view (mm^3, ``geometry.field_of_view_volume``).
    fov: Dict[str, float]
    #: Each image's LPS box volume (mm^3): decides ``small`` and ``large``.
    box: Dict[str, float]

    @classmethod
    def of(cls, fixed, moving) -> ImageRoles:
        images = {"fixed": fixed, "moving": moving}
        fine = "fixed" if voxel_volume(fixed) <= voxel_volume(moving) else "moving"
        coarse = _other(fine)
        fov = {name: field_of_view_volume(image) for name, image in images.items()}
        box = {name: physical_box(image).volume for name, image in images.items()}
        large = "fixed" if box["fixed"] >= box["moving"] else "moving"
        ratio = float((voxel_volume(images[coarse]) / voxel_volume(images[fine])) ** (1 / 3))
        return cls(images, fine, coarse, large, _other(large), ratio, fov, box)

    @property
    def fine_fov_fraction(self) -> float:
        """The fine image's field of view over the coarse one's (a micro-CT inside an MRI: small)."""
        return self.fov[self.fine] / max(self.fov[self.coarse], 1e-9)

    def sentences(self) -> List[str]:
        """The plan's first two sentences: who is fine, who is small, and what follows."""
        fine, coarse, large, small = self.fine, self.coarse, self.large, self.small
        return [
            f"The {fine} image has the finer voxels ({_fmt(self.images[fine].GetSpacing())} mm vs "
            f"{_fmt(self.images[coarse].GetSpacing())} mm, {self.ratio:.1f}x finer per axis on average).",
            f"The {large} image spans the larger region (its box {self.box[large] / 1000:.0f} mL vs "
            f"{self.box[small] / 1000:.0f} mL; its grid covers {self.fov[large] / 1000:.0f} mL vs "
            f"{self.fov[small] / 1000:.0f} mL); the metric samples the {small} image so that its samples "
            f"land inside the {large} one.",
        ]


def _other(name: str) -> str:
    return "moving" if name == "fixed" else "fixed"


def _fmt(values, digits: int = 2) -> str:
    return "x".join(f"{v:.{digits}f}" for v in values)
