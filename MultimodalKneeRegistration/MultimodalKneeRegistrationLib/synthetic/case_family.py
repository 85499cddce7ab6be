"""A family of registration cases with exactly known answers, each fully determined by a seed.

Why: "works from any starting orientation and is never silently wrong" is a claim about many cases,
not one. This module draws them reproducibly (issue 15):

- ``cube``: a micro-CT-like cube cut from the porcine CT (side 20-50 mm, spacing 0.05-0.3 mm, at a
  random position that contains bone, on a random oblique grid, sometimes left-handed), resampled
  with linear interpolation plus mild noise, against the porcine MR; the cube is the fixed or the
  moving image. The spacing is raised where needed to keep the cube at most ``MAX_CUBE_VOXELS``
  (40 M voxels, 80 MB) so that a case takes seconds to a minute, not an hour.
- ``cube`` with ``look="microct"`` (issue 18; ``microct_look_specs``, ``family_specs(...,
  microct_look=N)``): the same cube made to look like a real micro-CT (``.microct_look``): trabecular
  texture (~0.1-0.5 mm) in bone, voxel noise, concentric ring artefacts about the grid's third axis,
  beam-hardening cupping, zeros outside the reconstruction cylinder, stored as uint8 (a window),
  uint16 with an offset, inverted (negative slope), scaled or HU. Named "cube<seed>-mct-<units>".
  New ``CaseSpec`` fields are left out of ``to_dict`` at their defaults, so every spec drawn before
  them keeps its key, its cache folder and its images.
- ``pair``: the full CT (native, or block-averaged 2x to keep it fast) and the MR.
- ``phantom``: the synthetic knee (``..phantom``), no data needed: the family CI can always run.

In every case the moving image's header is moved so that the true fixed -> moving transform is a
drawn start pose: a rotation ("within60": 0-60 deg; "any": uniform over all rotations) about the
centre of the evaluation points, then a shift of up to 60 mm. Porcine answers derive exactly from
the bone-aligned reference (trusted to ~2 mm: 2.5 mm mean is the honest success limit), phantom
answers from the rendering transform. ``cached_case`` stores a case as NRRD + JSON by spec hash.

Example:
    >>> sources = PorcineSources(Path("../shared/data/porcine_ct_mr"))
    >>> for spec in family_specs(60, seed=1, sources=sources):
    ...     case = cached_case(spec, sources, Path("cache"))
    ...     print(case.name, case.description)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import affine_from_matrix, apply_matrix
from .pairs import GRIDS, GridSpec, make_registration_pair
from .porcine import PorcineSources, cube_grid, cut_cube, inside_grid
from .poses import axis_angle_matrix, header_moved, pose, random_direction_matrix, random_rotation, random_unit_vector

FAMILIES = ("cube", "pair", "phantom")
SIDE_RANGE_MM = (20.0, 50.0)
SPACING_RANGE_MM = (0.05, 0.3)
MAX_CUBE_VOXELS = 40_000_000
MAX_SHIFT_MM = 60.0
#: A cube must hold at least this fraction of bone (CT > 300 HU) and this many evaluation points.
MIN_BONE_FRACTION = 0.05
MIN_CUBE_POINTS = 30
#: Evaluation points: tissue blocks of 2 mm (cubes) or 4 mm (pairs), at most this many (seeded subset).
MAX_POINTS = 4000
#: Micro-CT-look cubes (``microct_look_specs``): seeds 1000 * seed + this + i, storages cycled, noise range.
MICROCT_SEED_OFFSET = 900
MICROCT_UNITS = ("uint8", "uint16-offset", "inverted", "scaled", "hu")
MICROCT_NOISE_HU = (10.0, 60.0)
#: Bumped whenever a spec would generate different images: it is part of the cache key.
GENERATOR_VERSION = 1
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: CaseSpec fields added after the first family, with the default that leaves them out of ``to_dict``.
_LATER_FIELDS = {"look": "ct"}


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines a case (JSON-serialisable); ``draw_spec`` fills it from a seed."""

    family: str
    seed: int
    start_group: str
    start_axis: Tuple[float, float, float]
    start_angle_deg: float
    start_direction: Tuple[float, float, float]
    start_shift_mm: float
    fine_fixed: bool  # the CT-like (fine) image is the fixed one
    grid_direction: Tuple[float, ...] = _IDENTITY  # cube grid / phantom fixed grid
    side_mm: float = 0.0
    spacing_mm: float = 0.0
    center: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # cube centre, CT space
    noise_hu: float = 0.0
    units: str = "hu"  # cube storage: "hu" (int16), "scaled" (uint16 scanner units), ... (microct_look.UNITS)
    ct_shrink: int = 1  # pair: CT block-averaged this many times per axis
    phantom_fine: str = "microct"  # phantom: the fine image's grid, "microct" or "ct"
    label: str = ""
    look: str = "ct"  # cube: "ct" (resampled CT + mild noise) or "microct" (microct_look); out of the key when "ct"

    @property
    def name(self) -> str:
        return f"{self.family}{self.seed:04d}" + (f"-{self.label}" if self.label else "")

    @property
    def flipped(self) -> bool:
        return bool(np.linalg.det(np.reshape(self.grid_direction, (3, 3))) < 0)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a dict; fields added after the first family (``_LATER_FIELDS``) only where set,
        so that every spec drawn before them keeps its dict, and so its key and its cache."""
        values = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if values[name] == default:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> CaseSpec:
        tuples = {"start_axis", "start_direction", "grid_direction", "center"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in values.items()})

    def key(self) -> str:
        """Hash of the spec and the generator version: the cache key.

        Floats enter it with 9 significant digits: a drawn grid direction is computed with sin, cos
        and exp, whose last bits differ between machines (the same code and numpy gave another key
        for every cube on a new machine), and the key must not.
        """
        text = json.dumps({"spec": _key_values(self.to_dict()), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def truth(self, center: Sequence[float]) -> np.ndarray:
        """The fixed -> moving answer: the start rotation about ``center``, then the start shift."""
        shift = np.asarray(self.start_direction) * self.start_shift_mm
        return pose(axis_angle_matrix(self.start_axis, self.start_angle_deg), shift, center)


def _key_values(value: Any) -> Any:
    """``value`` with every float at 9 significant digits (lists, tuples and dicts walked through)."""
    if isinstance(value, dict):
        return {k: _key_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_key_values(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.9g}")
    return value


def _rounded(values: Sequence[float], digits: int = 6) -> Tuple[float, ...]:
    return tuple(round(float(v), digits) for v in values)


def draw_spec(family: str, seed: int, sources: Optional[PorcineSources] = None, start_group: str = "any",
              **pinned: Any) -> CaseSpec:
    """The case of ``family`` drawn from ``seed``; ``pinned`` fields override the drawn ones.

    Cubes need ``sources`` to place the cube on bone. Pinned fields are set before the cube is
    placed, so a pinned side or grid is placed correctly.

    Example:
        >>> spec = draw_spec("cube", 7, sources, "any", side_mm=30.0, spacing_mm=0.1)
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown case family {family!r}: use one of {FAMILIES}")
    if pinned.get("look", "ct") != "ct" and family != "cube":
        raise ValueError(f"only cubes have a look, not {family} cases")
    rng = np.random.default_rng([FAMILIES.index(family), int(seed)])
    axis, angle = random_rotation(rng, start_group)
    values: Dict[str, Any] = dict(
        family=family, seed=int(seed), start_group=start_group, start_axis=_rounded(axis),
        start_angle_deg=round(angle, 3), start_direction=_rounded(random_unit_vector(rng)),
        start_shift_mm=round(float(rng.uniform(0.0, MAX_SHIFT_MM)), 3), fine_fixed=bool(rng.random() < 0.5))
    if family == "cube":
        values.update(_draw_cube(rng))
    elif family == "pair":
        values["ct_shrink"] = 2 if rng.random() < 0.7 else 1
    else:
        values["phantom_fine"] = str(rng.choice(["microct", "ct"]))
        if rng.random() < 0.7:
            values["grid_direction"] = tuple(random_direction_matrix(rng, rng.random() < 0.25).ravel())
    values.update(pinned)
    if family == "cube" and "center" not in pinned:
        if sources is None:
            raise ValueError("cube cases need the porcine sources to place the cube on bone")
        values["center"] = _cube_center(rng, sources, values)
    return CaseSpec(**values)


def _draw_cube(rng: np.random.Generator) -> Dict[str, Any]:
    side = round(float(rng.uniform(*SIDE_RANGE_MM)), 1)
    spacing = math.exp(rng.uniform(math.log(SPACING_RANGE_MM[0]), math.log(SPACING_RANGE_MM[1])))
    spacing = math.ceil(max(spacing, side / MAX_CUBE_VOXELS ** (1.0 / 3.0)) * 1000.0) / 1000.0
    flipped = bool(rng.random() < 0.25)
    if rng.random() < 0.8:
        direction = random_direction_matrix(rng, flipped)
    else:
        direction = np.diag([1.0, 1.0, -1.0 if flipped else 1.0])
    noise = 0.0 if rng.random() < 0.3 else round(float(rng.uniform(5.0, 30.0)), 1)
    return dict(side_mm=side, spacing_mm=spacing, grid_direction=tuple(direction.ravel()), noise_hu=noise,
                units=str(rng.choice(["hu", "scaled"])))


def _cube_center(rng: np.random.Generator, sources: PorcineSources, values: Dict[str, Any],
                 attempts: int = 400) -> Tuple[float, float, float]:
    """A centre near a random bone block (up to a third of the side off it) whose cube lies inside
    the CT, holds ``MIN_BONE_FRACTION`` bone and ``MIN_CUBE_POINTS`` evaluation points."""
    side, direction = values["side_mm"], np.reshape(values["grid_direction"], (3, 3))
    bone, tissue = sources.bone_points, sources.tissue_points(2.0)
    for _ in range(attempts):
        center = bone[rng.integers(len(bone))] + rng.uniform(-1.0, 1.0, 3) * side / 3.0
        probe = cube_grid(center, side, side / 16.0, direction)
        if not sources.contains(probe) or sources.bone_fraction(probe) < MIN_BONE_FRACTION:
            continue
        if inside_grid(probe, tissue, 1.0).sum() >= MIN_CUBE_POINTS:
            return _rounded(center, 3)
    raise RuntimeError(f"no cube of {side} mm with enough bone found in {attempts} attempts")


def family_specs(count: int, seed: int = 1, sources: Optional[PorcineSources] = None,
                 families: Sequence[str] = FAMILIES, microct_look: int = 0) -> List[CaseSpec]:
    """``count`` specs: 2/3 cubes (alternately "within60" and "any"), 1/6 pairs, 1/6 phantoms (any),
    then ``microct_look`` cubes that look like real micro-CTs (``microct_look_specs``).

    Only the ``families`` listed are drawn (their shares renormalised). Case ``i`` has the seed
    ``1000 * seed + i``, so its name says where it came from. The micro-CT-look cubes have their own
    seeds: adding them changes none of the other cases.

    Example:
        >>> specs = family_specs(60, seed=1, sources=sources)  # 40 cubes, 10 pairs, 10 phantoms
        >>> specs = family_specs(60, seed=1, sources=sources, microct_look=10)  # the same 60, then 10
    """
    shares = {"cube": 4, "pair": 1, "phantom": 1}
    weights = np.array([shares[f] for f in families], dtype=float)
    counts = np.floor(weights / weights.sum() * count).astype(int)
    counts[0] += count - counts.sum()
    specs: List[CaseSpec] = []
    for family, number in zip(families, counts):
        for i in range(int(number)):
            group = ("within60", "any")[i % 2] if family == "cube" else "any"
            specs.append(draw_spec(family, 1000 * seed + len(specs), sources, group))
    return specs + microct_look_specs(microct_look, seed, sources)


def microct_look_specs(count: int, seed: int = 1, sources: Optional[PorcineSources] = None) -> List[CaseSpec]:
    """``count`` cubes that look like real micro-CTs (``look="microct"``), cycling over every storage.

    Case ``i`` has the seed ``1000 * seed + MICROCT_SEED_OFFSET + i`` (no drawn family case has it),
    the start group "within60" / "any" alternately, units ``MICROCT_UNITS[i % 5]`` (so 10 cases give
    every storage with both groups), voxel noise 10-60 HU, the label "mct-<units>"; side, spacing,
    grid, role (fixed or moving) and place are drawn as for any cube.

    Example:
        >>> [s.name for s in microct_look_specs(2, 1, sources)]
        ['cube1900-mct-uint8', 'cube1901-mct-uint16-offset']
    """
    if count > 0 and sources is None:
        raise ValueError("micro-CT look cubes need the porcine sources to place the cube on bone")
    rng = np.random.default_rng([len(FAMILIES), int(seed)])
    specs: List[CaseSpec] = []
    for i in range(int(count)):
        units = MICROCT_UNITS[i % len(MICROCT_UNITS)]
        specs.append(draw_spec("cube", 1000 * seed + MICROCT_SEED_OFFSET + i, sources, ("within60", "any")[i % 2],
                               look="microct", units=units, label=f"mct-{units}",
                               noise_hu=round(float(rng.uniform(*MICROCT_NOISE_HU)), 1)))
    return specs


@dataclass
class Case:
    """A drawn case: images (in memory or as files), the fixed -> moving answer and where to measure."""

    spec: CaseSpec
    truth: np.ndarray  # 4x4, fixed LPS -> moving LPS
    points: np.ndarray  # (N, 3) fixed-space LPS points inside tissue
    description: str
    fixed_kind: str
    moving_kind: str
    facts: Dict[str, Any] = field(default_factory=dict)
    fixed: Optional[sitk.Image] = None
    moving: Optional[sitk.Image] = None
    fixed_path: Optional[Path] = None
    moving_path: Optional[Path] = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def true_transform(self) -> sitk.AffineTransform:
        return affine_from_matrix(self.truth)

    def errors_mm(self, matrix: np.ndarray) -> np.ndarray:
        """Distances (mm) between where ``matrix`` (fixed -> moving, 4x4) and the answer send the points."""
        return np.linalg.norm(apply_matrix(matrix, self.points) - apply_matrix(self.truth, self.points), axis=1)

    def images(self) -> Tuple[sitk.Image, sitk.Image]:
        """(fixed, moving), read from the files when not in memory."""
        fixed = self.fixed if self.fixed is not None else sitk.ReadImage(str(self.fixed_path))
        moving = self.moving if self.moving is not None else sitk.ReadImage(str(self.moving_path))
        return fixed, moving


def make_case(spec: CaseSpec, sources: Optional[PorcineSources] = None) -> Case:
    """Build the images and the answer of ``spec`` in memory (porcine families need ``sources``).

    Example:
        >>> case = make_case(draw_spec("phantom", 3))
        >>> errors = case.errors_mm(transform_to_matrix(register(case.fixed, case.moving, s).transform))
    """
    if spec.family == "phantom":
        return _phantom_case(spec)
    if sources is None:
        raise ValueError(f"{spec.family} cases need the porcine sources")
    rng = np.random.default_rng(spec.seed)
    if spec.family == "cube":
        grid = cube_grid(spec.center, spec.side_mm, spec.spacing_mm, np.reshape(spec.grid_direction, (3, 3)))
        fine = cut_cube(sources.ct, grid, spec.noise_hu, spec.units, spec.seed, spec.look)
        tissue = sources.tissue_points(2.0)
        points = tissue[inside_grid(grid, tissue, 1.0)]
        kind = "micro-CT cube" if spec.look == "ct" else "micro-CT-look cube"
    else:
        fine, kind = sources.ct_shrunk(spec.ct_shrink), "CT" if spec.ct_shrink == 1 else f"CT {spec.ct_shrink}x"
        points = sources.tissue_points(4.0)
    if len(points) > MAX_POINTS:
        points = points[np.sort(rng.choice(len(points), MAX_POINTS, replace=False))]
    return _porcine_case(spec, sources, fine, kind, points)


def _porcine_case(spec: CaseSpec, sources: PorcineSources, fine: sitk.Image, kind: str,
                  ct_points: np.ndarray) -> Case:
    """Fixed keeps its header; the moving one is moved by ``truth @ inv(T0)`` (T0: its true answer)."""
    reference = sources.reference
    if spec.fine_fixed:
        fixed, other, answer, points, kinds = fine, sources.mr, reference, ct_points, (kind, "MR")
    else:
        fixed, other = sources.mr, fine
        answer, points, kinds = np.linalg.inv(reference), apply_matrix(reference, ct_points), ("MR", kind)
    truth = spec.truth(points.mean(axis=0))
    moving = header_moved(other, truth @ np.linalg.inv(answer))
    return _finished(spec, fixed, moving, truth, points, kinds)


def _phantom_case(spec: CaseSpec) -> Case:
    kind = f"{spec.phantom_fine}-mri" if spec.fine_fixed else f"mri-{spec.phantom_fine}"
    base = GRIDS[kind.split("-")[0]]
    grid = GridSpec(base.size, base.spacing, tuple(spec.grid_direction), base.center)
    truth = spec.truth(base.center)
    pair = make_registration_pair(kind, affine_from_matrix(truth), fixed_grid=grid, seed=spec.seed)
    points = pair.target_points()
    if len(points) > MAX_POINTS:
        rng = np.random.default_rng(spec.seed)
        points = points[np.sort(rng.choice(len(points), MAX_POINTS, replace=False))]
    names = {"microct": "phantom micro-CT", "ct": "phantom CT", "mri": "phantom MR"}
    kinds = tuple(names[name] for name in kind.split("-"))
    return _finished(spec, pair.fixed, pair.moving, truth, points, kinds)


def _finished(spec: CaseSpec, fixed: sitk.Image, moving: sitk.Image, truth: np.ndarray, points: np.ndarray,
              kinds: Tuple[str, str]) -> Case:
    start = np.linalg.norm(apply_matrix(truth, points) - points, axis=1)
    fine = fixed if spec.fine_fixed else moving
    facts = {
        "start_error_mm": round(float(start.mean()), 2),
        "start_angle_deg": spec.start_angle_deg,
        "points": int(len(points)),
        "fixed_size": list(fixed.GetSize()),
        "fixed_spacing": [round(s, 4) for s in fixed.GetSpacing()],
        "moving_size": list(moving.GetSize()),
        "fine_voxels": int(np.prod(fine.GetSize())),
        "fine_mb": round(float(np.prod(fine.GetSize())) * fine.GetSizeOfPixelComponent() / 2**20, 1),
    }
    return Case(spec, truth, points, describe(spec, kinds, facts), kinds[0], kinds[1], facts, fixed, moving)


def describe(spec: CaseSpec, kinds: Tuple[str, str], facts: Dict[str, Any]) -> str:
    """One line saying what the case is and how far its start is from the answer."""
    what = f"{kinds[0]} fixed, {kinds[1]} moving"
    if spec.family == "cube":
        grid = "axis-aligned" if np.allclose(np.abs(spec.grid_direction), np.abs(_IDENTITY)) else "oblique"
        what = (f"{spec.side_mm:g} mm cube at {spec.spacing_mm:g} mm ({facts['fine_voxels'] / 1e6:.1f} M voxels, "
                f"{grid}{' left-handed' if spec.flipped else ''} grid, {spec.units}, noise {spec.noise_hu:g} HU"
                f"{_LOOK_WORDS[spec.look]}); "
                + what)
    elif spec.family == "phantom" and spec.grid_direction != _IDENTITY:
        what += f" (fixed grid oblique{', left-handed' if spec.flipped else ''})"
    return (f"{what}; answer {spec.start_angle_deg:.0f} deg + {spec.start_shift_mm:.0f} mm "
            f"({spec.start_group}), start error {facts['start_error_mm']:.0f} mm mean")


_LOOK_WORDS = {"ct": "", "microct": ", micro-CT look: trabeculae, rings, cupping, cylindrical field of view"}


def cached_case(spec: CaseSpec, sources: Optional[PorcineSources], cache_dir: Path) -> Case:
    """The case as files under ``cache_dir/<name>-<key>/`` (generated once; no images kept in memory).

    Example:
        >>> case = cached_case(spec, sources, Path("~/.cache/mkr-cases").expanduser())
        >>> case.fixed_path, case.moving_path, case.truth
    """
    folder = Path(cache_dir) / f"{spec.name}-{spec.key()}"
    if not (folder / "case.json").is_file():
        case = make_case(spec, sources)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        sitk.WriteImage(case.fixed, str(partial / "fixed.nrrd"), useCompression=False)
        sitk.WriteImage(case.moving, str(partial / "moving.nrrd"), useCompression=False)
        record = {"spec": spec.to_dict(), "generator_version": GENERATOR_VERSION, "truth": case.truth.tolist(),
                  "points": np.round(case.points, 3).tolist(), "description": case.description,
                  "fixed_kind": case.fixed_kind, "moving_kind": case.moving_kind, "facts": case.facts}
        (partial / "case.json").write_text(json.dumps(record))
        partial.rename(folder)
    return load_case(folder)


def load_case(folder: Path) -> Case:
    """A case written by ``cached_case`` (paths only; ``Case.images()`` reads the images)."""
    record = json.loads((Path(folder) / "case.json").read_text())
    return Case(CaseSpec.from_dict(record["spec"]), np.array(record["truth"]), np.array(record["points"]),
                record["description"], record["fixed_kind"], record["moving_kind"], record["facts"],
                fixed_path=Path(folder) / "fixed.nrrd", moving_path=Path(folder) / "moving.nrrd")
