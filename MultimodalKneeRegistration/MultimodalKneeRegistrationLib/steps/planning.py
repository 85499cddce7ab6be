"""The registration plan: which image to downsample and by how much, what to crop, how to sample.

Why: BRAINSFit's defaults fail on MRI <-> micro-CT because the micro-CT voxels are ~10x smaller,
the MRI covers far more anatomy, and 0.2% sampling gives the metric too few points. The plan makes
the expert's manual choices from the images themselves and says why in plain sentences, so the user
can read (and override) every decision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from ..settings import ExecutionSettings, OptimizerSettings, RegistrationSettings, SearchSettings
from .preprocessing import shrink_factors_for_spacing
from .roles import ImageRoles

#: Voxels of the small-field image at the coarse level where the multi-start search runs.
SEARCH_VOXEL_BUDGET = 60_000


@dataclass(frozen=True)
class RegistrationPlan:
    """Every choice made before optimisation starts (``explanation`` says why in sentences).

    Frozen, and never rewritten during the run: what the run learns (the ROI actually cut, which start
    was kept) goes into the result's ``facts``.
    """

    fine_image: str
    large_fov_image: str
    spacing_ratio: float
    spacing_multiplier: float
    fixed_shrink: Tuple[int, int, int]
    moving_shrink: Tuple[int, int, int]
    fixed_working_spacing: Tuple[float, float, float]
    moving_working_spacing: Tuple[float, float, float]
    working_spacing_mm: float
    search_spacing_mm: float
    roi_margin_mm: float
    sampling_percentage: float
    metric_samples: int
    number_of_histogram_bins: int
    shrink_factors: Tuple[int, ...]
    smoothing_sigmas_mm: Tuple[float, ...]
    initialize_transform_mode: str
    #: The settings groups the later steps read (engines read only the plan).
    search: SearchSettings
    optimizer: OptimizerSettings
    execution: ExecutionSettings
    explanation: Tuple[str, ...]

    @property
    def small_fov_image(self) -> str:
        return "moving" if self.large_fov_image == "fixed" else "fixed"

    def with_note(self, note: str) -> RegistrationPlan:
        """The same plan with one more sentence of explanation (while planning: ``plan_resolution``)."""
        return dataclasses.replace(self, explanation=self.explanation + (note,))

    def to_dict(self, facts=None) -> dict:
        """The plan for the report, with what the run learned (``results.RunFacts``) where the report has
        always shown it: the ROI cut, the initialisation the kept result ran with, the run's sentences."""
        data = dataclasses.asdict(self)
        roi = getattr(facts, "roi", None)
        ordered = {}
        for key, value in data.items():
            ordered[key] = value
            if key == "search_spacing_mm":
                ordered["roi"] = roi.to_dict() if roi is not None else None
        if getattr(facts, "initialization", None):
            ordered["initialize_transform_mode"] = facts.initialization
        ordered["explanation"] = list(self.explanation) + list(getattr(facts, "notes", ()))
        return ordered


def plan_registration(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
) -> RegistrationPlan:
    """Plan resolution, field of view and sampling for registering ``moving`` to ``fixed``.

    Only the images' geometry is read (size, spacing, origin, direction), so headers will do. The
    ROI is cut after initialisation, when the small image's footprint is known: the plan decides its
    margin, the result records the box (``RegistrationResult.facts``).

    Example:
        >>> plan = plan_registration(ct, mr, PRESETS["mri-ct"])  # doctest: +SKIP
        >>> print("\\n".join(plan.explanation))  # doctest: +SKIP
    """
    roles = ImageRoles.of(fixed, moving)
    explanation = roles.sentences()
    working, fine_shrink, multiplier, sentence = _fine_grid(roles, settings)
    explanation.append(sentence)
    coarse_shrink = shrink_factors_for_spacing(roles.images[roles.coarse].GetSpacing(), working)
    shrinks = {roles.fine: fine_shrink, roles.coarse: coarse_shrink}
    if any(f > 1 for f in coarse_shrink):
        explanation.append(f"The {roles.coarse} image is block-averaged by {_fmt(coarse_shrink, 0)} to match.")
    spacing = {n: tuple(float(s * f) for s, f in zip(roles.images[n].GetSpacing(), shrinks[n])) for n in roles.images}
    small_voxels = roles.fov[roles.small] / float(np.prod(spacing[roles.small]))
    percentage, sentence = _sampling(settings, small_voxels, roles.small)
    explanation.append(sentence)
    search_spacing = max(working * 2, (roles.fov[roles.small] / SEARCH_VOXEL_BUDGET) ** (1 / 3))
    if settings.choices.initialize_transform_mode == "search":
        explanation.append(_search_sentence(settings.search, search_spacing))
    return RegistrationPlan(
        fine_image=roles.fine,
        large_fov_image=roles.large,
        spacing_ratio=round(roles.ratio, 3),
        spacing_multiplier=multiplier,
        fixed_shrink=tuple(shrinks["fixed"]),
        moving_shrink=tuple(shrinks["moving"]),
        fixed_working_spacing=spacing["fixed"],
        moving_working_spacing=spacing["moving"],
        working_spacing_mm=round(working, 4),
        search_spacing_mm=round(search_spacing, 3),
        roi_margin_mm=settings.choices.roi_margin_mm,
        sampling_percentage=percentage,
        metric_samples=int(percentage * small_voxels),
        number_of_histogram_bins=settings.planning.number_of_histogram_bins,
        shrink_factors=tuple(settings.planning.shrink_factors),
        smoothing_sigmas_mm=tuple(settings.planning.smoothing_sigmas_mm),
        initialize_transform_mode=settings.choices.initialize_transform_mode,
        search=settings.search,
        optimizer=settings.optimizer,
        execution=settings.execution,
        explanation=tuple(explanation),
    )


def _fine_grid(roles: ImageRoles, settings: RegistrationSettings):
    """(working spacing, the fine image's block factors, the spacing multiplier, the sentence saying so)."""
    fine_image = roles.images[roles.fine]
    budget_spacing = (roles.fov[roles.small] / settings.planning.working_voxel_budget) ** (1 / 3)
    fine_min = min(fine_image.GetSpacing())
    coarse_min = min(roles.images[roles.coarse].GetSpacing())
    working = max(coarse_min, budget_spacing, fine_min)
    working = min(working, max(settings.planning.max_working_spacing_mm, fine_min))
    given = settings.choices.spacing_multiplier
    if given is not None:
        multiplier = float(given)
        shrink = tuple(max(1, int(round(multiplier))) for _ in range(3))
        return working, shrink, multiplier, (
            f"Spacing multiplier {multiplier:g} for the {roles.fine} image was given by the user: it is "
            f"block-averaged by {_fmt(shrink, 0)} voxels (whole voxels per axis; every engine sees this grid)."
        )
    multiplier = round(working / fine_min, 2)
    shrink = shrink_factors_for_spacing(fine_image.GetSpacing(), working)
    return working, shrink, multiplier, (
        f"The {roles.fine} image is block-averaged by {_fmt(shrink, 0)} voxels (Crop Volume spacing "
        f"multiplier ~{multiplier:g}, rounded to whole voxels per axis; every engine sees this grid) to "
        f"~{working:.2f} mm: finer would not add information the {roles.coarse} image can match, and it "
        f"keeps each working image near {settings.planning.working_voxel_budget / 1e6:.1f} M voxels."
    )


def _sampling(settings: RegistrationSettings, small_voxels: float, small: str):
    """(sampling fraction of the small working image, the sentence saying why)."""
    if settings.choices.sampling_percentage is not None:
        percentage = float(settings.choices.sampling_percentage)
        return percentage, f"Sampling percentage {percentage:g} was given by the user."
    budgets = settings.planning
    wanted = float(np.clip(0.1 * small_voxels, budgets.min_metric_samples, budgets.max_metric_samples))
    percentage = float(min(1.0, wanted / max(small_voxels, 1.0)))
    return percentage, (
        f"The metric samples {percentage:.3g} of the {small} working voxels (~{int(percentage * small_voxels):,} "
        f"points, never BRAINSFit's 0.002 default that left too few samples)."
    )


def _search_sentence(search, spacing_mm: float) -> str:
    from ..search.rotations import covering_radius_deg, search_rotations

    count = len(search_rotations(search))
    turns = " and about each of the three half turns (a scan turned over)" if search.flips else ""
    fill = ", plus rotations spread over every other orientation" if search.orientations == "all" else ""
    return (
        f"Initialisation: multi-start search over {count} rotations (a grid within {search.max_angle_deg:g} deg of "
        f"the start{turns}, {search.angle_step_deg:g} deg apart{fill}: every orientation lies within "
        f"{covering_radius_deg(search):.0f} deg of one) and over positions, scored by mutual information at "
        f"{spacing_mm:.1f} mm." + _levels_sentence(search)
    )


def _levels_sentence(search) -> str:
    """The edge correlation's coarse-to-fine levels, with their measured covering radii."""
    from ..search.rotations import local_covering_deg

    if search.edge_correlation is False or not search.level_steps_deg:
        return ""
    steps = ", ".join(f"{step:g}" for step in search.level_steps_deg)
    radii = ", ".join(f"{local_covering_deg(step):.1f}" for step in search.level_steps_deg)
    keep = ", ".join(str(k) for k in search.level_keep)
    polish = (f" (the first level's poses each polished by {search.polish_evaluations} evaluations of the "
              "mutual information before the next level chooses)"
              if search.polish_evaluations and len(search.level_steps_deg) > 1 else "")
    return (
        f" When the small image covers under 1/8 of the other's field of view (a micro-CT in an MRI), every "
        f"rotation is also correlated by edges over every position, then {len(search.level_steps_deg)} finer "
        f"levels turn the {keep} best poses by 33 rotations {steps} deg apart (covering radius {radii} deg, "
        f"measured){polish}, and the {search.final_candidates} best go to the refinement."
        + _retry_sentence(search)
    )


def _retry_sentence(search) -> str:
    """The denser second search a refused result gets (``SearchSettings.retry_fill_rotations``)."""
    from ..search.rotations import search_rotations

    if search.retry_fill_rotations <= search.fill_rotations or search.orientations != "all":
        return ""
    count = len(search_rotations(replace(search, fill_rotations=search.retry_fill_rotations)))
    return (f" If that result fails the sanity checks, the search runs once more over {count} rotations, and "
            "its result is kept only if it passes them.")


def _fmt(values, digits: int = 2) -> str:
    return "x".join(f"{v:.{digits}f}" for v in values)
