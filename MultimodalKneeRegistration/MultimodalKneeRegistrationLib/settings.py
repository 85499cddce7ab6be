"""Typed registration settings, in groups, and the named presets.

Why: users pick a preset and maybe override one knob; everything else is planned from the images
(``steps.planning``). The settings are grouped by who reads them: ``choices`` (what the panel and
the command line expose about the data), ``planning`` (the planner's budgets), ``search`` (the
multi-start search), ``optimizer`` (what the engines run), ``checks`` (the result's sanity checks)
and ``execution`` (threads). Each group is a frozen dataclass; the planner copies the groups the
later steps need into the plan, so engines read only the plan.

Every field also has one flat name, unique across groups (``number_of_iterations``,
``search_max_angle_deg``, ``optimizer`` for ``optimizer.method``): ``settings.replace(...)`` and
``settings_for_preset(name, ...)`` take those, so a command-line flag or a panel knob maps to one
keyword. Names mirror BRAINSFit's parameters in snake_case where BRAINSFit has one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .errors import InputError

#: BRAINSFit's ``initializeTransformMode`` values (less the brain-specific useCenterOfHeadAlign),
#: plus ``"search"``: our multi-start search.
INITIALIZE_MODES = ("search", "useGeometryAlign", "useMomentsAlign", "Off")
#: BRAINSFit's transform stages we support, in the order they run.
TRANSFORM_STAGES = ("Rigid", "ScaleVersor3D", "Affine")
#: Optimisers of the SimpleITK engine's rigid stage. Powell (default) needs no gradient: on the
#: porcine pair it reached 1.5 mm from the bone-aligned reference where conjugate gradients stopped
#: at 4.7 mm and BRAINSFit's RegularStepGradientDescent at 2.9 mm (rough, flat MI valleys stall
#: gradient methods). Scale/affine stages always use conjugate gradients (Powell is slow in 12-D).
OPTIMIZERS = ("Powell", "ConjugateGradientLineSearch", "RegularStepGradientDescent")
#: The preset used when none is given: chosen from the images (``steps.auto_preset``).
DEFAULT_PRESET = "auto"
#: The preset for an MRI with a micro-CT (``auto`` picks it from the images; see ``steps.auto_preset``).
MICROCT_PRESET = "mri-microct-knee"
#: Engine names a user can choose (``--engine``, the Slicer panel; ``engines.engine_named``), the
#: first the default. Here, not in ``engines``, so the Slicer shell reads them without SimpleITK.
ENGINE_NAMES = ("SimpleITK", "BRAINSFit")
DEFAULT_ENGINE = ENGINE_NAMES[0]


@dataclass(frozen=True)
class UserChoices:
    """What the user decides about the data; ``None`` means "let the planner choose"."""

    #: Crop Volume's "spacing multiplier" for the fine image: integer blocks per axis (None: planned).
    spacing_multiplier: Optional[float] = None
    #: Margin (mm) kept around the small image's footprint when cropping the large one.
    roi_margin_mm: float = 15.0
    #: Fraction of working voxels the metric samples (None: enough for ``min_metric_samples``).
    sampling_percentage: Optional[float] = None
    initialize_transform_mode: str = "search"


@dataclass(frozen=True)
class PlanningBudgets:
    """The planner's budgets: how fine the working images are and how many samples the metric takes."""

    #: Target voxel count of the small-field working image at the finest level.
    working_voxel_budget: int = 1_500_000
    #: Coarsest spacing (mm) worth registering at; the finest level never goes coarser than this.
    max_working_spacing_mm: float = 1.6
    min_metric_samples: int = 60_000
    max_metric_samples: int = 120_000
    number_of_histogram_bins: int = 50
    #: Shrink factors of the multi-resolution pyramid, relative to the working images.
    #: The multi-start search already plays the coarse levels, so one level usually suffices.
    shrink_factors: Tuple[int, ...] = (1,)
    smoothing_sigmas_mm: Tuple[float, ...] = (0.0,)


@dataclass(frozen=True)
class SearchSettings:
    """The multi-start pose search (``search.initialization``); flat names start with ``search_``."""

    #: Largest rotation (degrees) the grid explores around the start (and around each half turn).
    max_angle_deg: float = 60.0
    angle_step_deg: float = 25.0
    #: Also search around the three half turns (scans of a specimen or patient turned over).
    flips: bool = True
    #: "all": also try ``fill_rotations`` rotations spread over every other orientation (a specimen
    #: can come in any orientation); "near": only the grid around the start and the half turns.
    orientations: str = "all"
    fill_rotations: int = 300
    #: Also look for the small image anywhere in the large one (micro-CT headers share no
    #: coordinate system with the MRI; otherwise only used when the images do not overlap).
    whole_field: bool = False
    #: Also find the small image by edge-map correlation over every shift (``search.edge_correlation``);
    #: None: when its field of view is under 1/8 of the large image's (a micro-CT inside an MRI).
    edge_correlation: Optional[bool] = None
    #: The correlation's refinement levels (``pose_levels``): each turns the ``level_keep`` best poses
    #: of the level before by a grid of 33 rotations ``level_steps_deg`` apart (reaching twice as far),
    #: so each level reaches the last one's covering radius: 17 deg apart reach 34 deg, the whole-group
    #: set's covering radius; 8 deg reach the 16 deg left; 4 deg reach 7.5 and leave 3.8 deg.
    level_steps_deg: Tuple[float, ...] = (17.0, 8.0, 4.0)
    level_keep: Tuple[int, ...] = (32, 12, 8)
    #: Poses of the last level handed to the mutual-information refinement (half by edge correlation).
    final_candidates: int = 6
    #: The first refinement level's poses are each polished by this many evaluations of the search's
    #: mutual information (pattern search) and the next level keeps the best polished ones; 0: off.
    #: Why: at the search's spacing the MI peak is ~1-2 mm wide, so a pose 6 deg / 6 mm from the
    #: answer scores below look-alikes unpolished (cube1016: 0.68 against 0.73-0.76) and above them
    #: polished (0.76, then 0.83 at the answer); see pose_levels. Off by default: on the family's 40
    #: CT-look cubes (100 evaluations) it found one more well-posed answer (cube1016, 0.64 mm) but
    #: three ill-posed cubes, whose floor itself ends 2.5-9.3 mm from the reference, then passed the
    #: verdict wrong (2.5, 2.5, 12.3 mm) where they were refused, for +12 CPU s a cube (median); on
    #: the held-out cubes it lost one success (cube2009). Results/issue18/SEARCH_POLISH.md.
    polish_evaluations: int = 0
    #: When the result of a search with the edge correlation fails the sanity checks, the search runs
    #: once more with this many fill rotations (1,400: 1,232 rotations in all instead of 449) and the
    #: engine refines its best pose; the retry's result is kept only if it passes. 0 (the default): no
    #: retry; ``--search-retry`` asks for 1,400. Why off: on the case family's 26 refused cases it
    #: rescued none; on the held-out set it rescued two well-posed cubes (cube2013 1.5 mm, cube2901
    #: 0.9 mm) but passed an ill-posed one 25 mm off (cube2007, whose own floor ends 21.7 mm off), and a
    #: refused cube took 39-41 s instead of 16-18 s (results/issue18/EDGE_CHOICE_AND_RETRY.md).
    retry_fill_rotations: int = 0


@dataclass(frozen=True)
class OptimizerSettings:
    """What the engines run after the search (flat name of ``method``: ``optimizer``)."""

    transform_stages: Tuple[str, ...] = ("Rigid",)
    number_of_iterations: int = 15
    method: str = "Powell"
    random_seed: int = 121212
    #: Powell: sweeps over all parameters, the line-search tolerance in mm-like scaled units, and
    #: the relative metric change over a sweep that counts as converged. Porcine pair: 4 sweeps at
    #: 1e-4 stopped 1.5-2.7 mm from the reference depending on the seed, mid-valley; 10 sweeps at
    #: 1e-6 reach the valley floor. The micro-CT preset uses 1e-4 (see there).
    powell_sweeps: int = 10
    powell_step_tolerance: float = 0.1
    powell_line_iterations: int = 12
    powell_value_tolerance: float = 1e-6
    #: The value tolerance of the sample-set rounds after the first (the looser of the two counts):
    #: they start at a converged pose and only follow the next sample set's optimum. At 1e-6 they
    #: crept 2-8 sweeps each on the case family's pairs (about 1 s a sweep); at 1e-4 the pairs took
    #: 35 % fewer sweeps in all (14.1 -> 9.1 on average) and ended within 0.01 mm of where they did
    #: on 9 of 10 pairs (pair1049: 0.71 -> 0.84 mm from the answer). 1e-4 in every round as well
    #: cost pair1049 0.5 mm (1.20 mm). Issue 18, results/issue18/CONSTRAINT_AND_ROUNDS.md.
    powell_round_value_tolerance: float = 1e-4
    #: Powell's rigid stage runs up to this many times, each on a fresh random sample set from where
    #: the last stopped, and stops once two end within ``simpleitk_engine.ROUNDS_AGREE_MM``; a dense
    #: referee evaluation keeps the best endpoint (see simpleitk_engine).
    resample_rounds: int = 3
    #: After those rounds, restart the rigid stage from its result turned +/- this many degrees
    #: about each axis (6 more runs, the dense referee keeps the best); 0 turns it off. Off in every
    #: preset since the search's levels (issue 18): on 10 family cubes started from the new search's
    #: pose, the restarts moved the result by 0.0-0.5 deg / 0.0-0.4 mm, changed the error by -0.16 to
    #: +0.07 mm (one gain over 0.03 mm) and cost 1.4-3.5x the rigid stage's time; the search scorer's
    #: polish shift, the verdict's look at convergence, was 0 on the one case they helped, so it cannot
    #: tell when they are worth it.
    rotation_restarts_deg: float = 0.0
    #: Powell's first step and the SimpleITK engine's gradient step bounds (mm-like scaled units).
    #: BRAINSFit's own steps are on another scale: see ``engines.brainsfit_parameters``.
    max_step_mm: float = 2.0
    min_step_mm: float = 0.005
    relaxation_factor: float = 0.6


@dataclass(frozen=True)
class CheckSettings:
    """Limits of the result's sanity checks (``verdict.checks``)."""

    #: Raise ``RegistrationFailedError`` when the result fails its own sanity checks.
    fail_on_sanity_check: bool = True
    min_final_overlap_fraction: float = 0.2
    #: Floor of the "shared information" check (MI / entropy at the result, see metrics); correct
    #: results measured 0.26-0.49 here, look-alike poses 0.12-0.15.
    min_explained_fraction: float = 0.18
    max_scale_deviation: float = 0.3
    #: Without the search, a result may turn at most this far from the start (else it wandered off).
    max_rotation_without_search_deg: float = 45.0
    #: The verdict's limits (``verdict``), set on the case family's 63 cases (FAMILY.md): the
    #: result's score over the best different pose's (relative), the two images' edge correlation at
    #: the result and its lead over the competitor's, the smallest relative score drop for a one-voxel
    #: move, and how far (in search voxels) a local search moves the result. Below a limit the result
    #: is refused; at the "sure" value that look grades 1 (the confidence is the weakest grade).
    #: The edge floor is 0.60, not the 0.70 first chosen: right answers measured 0.67 (a CT/MRI
    #: phantom at 1.2 vs 0.9x0.9x3 mm) and 0.65 (a held-out cube), and on the 63 cases no wrong
    #: result is caught by the edge floor alone above 0.55 (the other looks catch them).
    min_margin: float = 0.105
    sure_margin: float = 0.25
    min_edge_agreement: float = 0.60
    sure_edge_agreement: float = 0.85
    min_edge_lead: float = 0.0
    sure_edge_lead: float = 0.1
    #: A competitor whose edges agree below ``min_edge_agreement`` and at least this much less than the
    #: result's is a mutual-information look-alike, not a rival answer: the margin look then rests on the
    #: edges (graded from this gap to 0.25 above it). Why: the coarse-to-fine search (issue 18) finds
    #: more look-alikes; on cube1006 a right answer (1.3 mm) was refused on a 3 % margin over a pose
    #: 113 mm away whose edges did not agree at all (lead 0.77).
    look_alike_edge_gap: float = 0.25
    min_constraint: float = 0.012
    sure_constraint: float = 0.05
    max_polish_voxels: float = 2.5


@dataclass(frozen=True)
class ExecutionSettings:
    """Threads, and whether results must repeat bit for bit."""

    #: Threads when ``deterministic`` is off (None: ITK's default, every core).
    number_of_threads: Optional[int] = None
    #: Bit-identical transforms for the same inputs and settings, on any machine: filters with
    #: reductions and gradient optimisers run on one thread (ITK merges their per-thread sums in
    #: completion order: two 2-thread runs on the porcine pair differed by 0.35 mm), Powell on a
    #: fixed 2 threads (its metric values merge in a fixed order). See ``execution``.
    deterministic: bool = True


_GROUPS = {
    "choices": UserChoices,
    "planning": PlanningBudgets,
    "search": SearchSettings,
    "optimizer": OptimizerSettings,
    "checks": CheckSettings,
    "execution": ExecutionSettings,
}
_RENAMED = {("optimizer", "method"): "optimizer"}


def _flat_name(group: str, name: str) -> str:
    if (group, name) in _RENAMED:
        return _RENAMED[(group, name)]
    return f"search_{name}" if group == "search" else name


#: Flat keyword -> (group, field): the names ``replace`` and ``settings_for_preset`` take.
FLAT_NAMES: Dict[str, Tuple[str, str]] = {
    _flat_name(group, f.name): (group, f.name) for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)
}


@dataclass(frozen=True)
class RegistrationSettings:
    """Everything that steers one run, in groups.

    Example:
        >>> s = PRESETS["mri-ct"].replace(number_of_iterations=500)
        >>> s.optimizer.number_of_iterations
        500
    """

    preset: str = "mri-ct"
    choices: UserChoices = field(default_factory=UserChoices)
    planning: PlanningBudgets = field(default_factory=PlanningBudgets)
    search: SearchSettings = field(default_factory=SearchSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    #: The flat names the user set (command line, batch row, panel; ``settings_for_preset``'s
    #: keywords). ``steps.plan_resolution`` applies them last, over the preset ``auto`` chooses.
    overrides: Tuple[str, ...] = ()

    def replace(self, **changes: Any) -> RegistrationSettings:
        """A validated copy with ``changes`` (flat names, or ``preset``/whole groups) applied."""
        groups: Dict[str, Dict[str, Any]] = {}
        direct: Dict[str, Any] = {}
        for key, value in changes.items():
            if key == "preset" or key in _GROUPS:
                direct[key] = value
            elif key in FLAT_NAMES:
                group, name = FLAT_NAMES[key]
                groups.setdefault(group, {})[name] = value
            else:
                raise InputError(f"unknown setting {key!r}", f"use one of {', '.join(sorted(FLAT_NAMES))}")
        for group, values in groups.items():
            direct[group] = dataclasses.replace(direct.get(group, getattr(self, group)), **values)
        updated = dataclasses.replace(self, **direct)
        updated.validate()
        return updated

    def flat(self) -> Dict[str, Any]:
        """Every setting by its flat name (what ``replace`` takes)."""
        return {key: getattr(getattr(self, group), name) for key, (group, name) in FLAT_NAMES.items()}

    def to_dict(self) -> Dict[str, Any]:
        groups = {group: dataclasses.asdict(getattr(self, group)) for group in _GROUPS}
        return {"preset": self.preset, **groups, "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> RegistrationSettings:
        """The settings ``to_dict`` wrote (e.g. ``report.json``'s ``result.settings``), validated.

        Example:
            >>> s = settings_for_preset("mri-ct", number_of_iterations=30)
            >>> RegistrationSettings.from_dict(s.to_dict()) == s
            True
        """
        from .settings_validation import settings_from_dict

        return settings_from_dict(cls, data, _GROUPS)

    def validate(self) -> None:
        """Raise ``InputError`` naming the first setting that cannot work."""
        from .settings_validation import validate_settings

        validate_settings(self)


PRESETS = {
    # Chosen from the images at the start of ``register`` (``steps.auto_preset``): mri-ct or
    # mri-microct-knee, with every knob the user set kept.
    "auto": RegistrationSettings(
        preset="auto", planning=PlanningBudgets(working_voxel_budget=400_000, max_working_spacing_mm=2.5)
    ),
    # Clinical CT <-> MRI: work at ~2.5 mm, the MRI's slice spacing. Measured on the porcine pair:
    # 1.6 mm mean error to the reference at 2.5 mm vs 2.6 mm at 1.6 mm (the finer MI valley is rougher).
    "mri-ct": RegistrationSettings(
        preset="mri-ct", planning=PlanningBudgets(working_voxel_budget=400_000, max_working_spacing_mm=2.5)
    ),
    MICROCT_PRESET: RegistrationSettings(
        preset=MICROCT_PRESET,
        choices=UserChoices(roi_margin_mm=10.0),
        # 60,000 metric samples, not up to 120,000: each Powell evaluation of Mattes MI costs ~2 ms
        # plus ~0.04 ms per 1,000 samples, so on the 48 mm cube the rigid stage took 5.3 s with 120k
        # and 3.9 s with 60k, ending 0.1 mm from where 120k ended. The case family's 53 cubes and
        # its 26 held-out ones: the same outcomes, errors within 0.22 mm (issue 18,
        # EDGE_SPEED_AND_SAMPLES.md).
        planning=PlanningBudgets(max_working_spacing_mm=1.0, working_voxel_budget=2_000_000, max_metric_samples=60_000),
        # Powell's value tolerance 1e-4: from the search's pose 1e-6 made the first round creep for 11
        # sweeps on the 48 mm cube; 1e-4 ends 0.03 mm from there, the rigid stage 40-60 % shorter, the
        # same outcomes on the family's cubes (issue 18). Not for mri-ct's first round: there it
        # ended pair1049 0.5 mm further off (1.20 mm); its later rounds use 1e-4
        # (``powell_round_value_tolerance``).
        optimizer=OptimizerSettings(number_of_iterations=40, powell_value_tolerance=1e-4),
    ),
    "fast-preview": RegistrationSettings(
        preset="fast-preview",
        planning=PlanningBudgets(
            working_voxel_budget=400_000, max_working_spacing_mm=2.5, min_metric_samples=20_000,
            max_metric_samples=60_000,
        ),
        search=SearchSettings(angle_step_deg=30.0, max_angle_deg=45.0),
        optimizer=OptimizerSettings(powell_sweeps=4, powell_value_tolerance=1e-4, resample_rounds=1),
    ),
}


def user_overrides(settings: RegistrationSettings) -> Dict[str, Any]:
    """The knobs the user set on ``settings``: the names it records (``settings.overrides``), plus
    any value that differs from its preset's (a settings object changed with ``replace``).

    Example:
        >>> user_overrides(settings_for_preset("auto", number_of_iterations=15))
        {'number_of_iterations': 15}
    """
    values, base = settings.flat(), PRESETS[settings.preset].flat()
    names = set(settings.overrides) | {key for key, value in values.items() if value != base[key]}
    return {key: values[key] for key in sorted(names)}


def settings_for_preset(name: str, **overrides: Any) -> RegistrationSettings:
    """The preset called ``name`` with ``overrides`` (flat names) applied; ``None`` values are ignored.

    The names set are kept in ``overrides``: what the user chose, applied again over the preset
    ``auto`` picks (``steps.plan_resolution``), even where a value equals ``auto``'s own.

    Example:
        >>> settings_for_preset("mri-ct", number_of_iterations=300).optimizer.number_of_iterations
        300
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}", f"use one of {', '.join(sorted(PRESETS))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return PRESETS[name]
    return dataclasses.replace(PRESETS[name].replace(**changes), overrides=tuple(sorted(changes)))
