"""Typed registration settings and the named presets.

Why: users pick a preset ("mri-microct-knee") and maybe override one knob; everything else is
planned from the images (see ``planning``). Names mirror BRAINSFit's parameters in snake_case
(``sampling_percentage`` is BRAINSFit's ``samplingPercentage``) so that a Slicer user recognises
them and ``brainsfit_parameters`` can map them one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

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


@dataclass(frozen=True)
class RegistrationSettings:
    """Everything that steers one run; ``None`` means "let the planner choose".

    Example:
        >>> s = PRESETS["mri-ct"].replace(number_of_iterations=500)
    """

    preset: str = "mri-ct"
    #: Crop Volume's "spacing multiplier" for the fine image (None: from spacing ratio and budget).
    spacing_multiplier: Optional[float] = None
    #: Target voxel count of each working image at the finest level.
    working_voxel_budget: int = 1_500_000
    #: Coarsest spacing (mm) worth registering at; the finest level never goes coarser than this.
    max_working_spacing_mm: float = 1.6
    #: Margin (mm) kept around the small image's footprint when cropping the large one.
    roi_margin_mm: float = 15.0
    #: Fraction of working voxels the metric samples (None: enough for ``min_metric_samples``).
    sampling_percentage: Optional[float] = None
    min_metric_samples: int = 60_000
    max_metric_samples: int = 120_000
    number_of_iterations: int = 15
    number_of_histogram_bins: int = 50
    initialize_transform_mode: str = "search"
    #: Largest rotation (degrees) the multi-start search explores around the start.
    search_max_angle_deg: float = 60.0
    search_angle_step_deg: float = 25.0
    #: Also search around the three half turns (scans of a specimen or patient turned over).
    search_flips: bool = True
    #: Also look for the small image anywhere in the large one (micro-CT headers share no
    #: coordinate system with the MRI; otherwise only used when the images do not overlap).
    search_whole_field: bool = False
    #: Also find the small image by edge-map correlation over every shift (``gradient_correlation``);
    #: None: when its field of view is under 1/8 of the large image's (a micro-CT inside an MRI).
    search_edge_correlation: Optional[bool] = None
    transform_stages: Tuple[str, ...] = ("Rigid",)
    #: Shrink factors of the multi-resolution pyramid, relative to the working images.
    #: The multi-start search already plays the coarse levels, so one level usually suffices.
    shrink_factors: Tuple[int, ...] = (1,)
    smoothing_sigmas_mm: Tuple[float, ...] = (0.0,)
    optimizer: str = "Powell"
    #: Powell: sweeps over all parameters, the line-search tolerance in mm-like scaled units, and
    #: the metric change that counts as converged. Porcine pair: 4 sweeps at 1e-4 stopped 1.5-2.7 mm
    #: from the reference depending on the seed, mid-valley; 10 sweeps at 1e-6 reach the valley floor.
    powell_sweeps: int = 10
    powell_step_tolerance: float = 0.1
    powell_line_iterations: int = 12
    powell_value_tolerance: float = 1e-6
    #: Powell's rigid stage runs this many times, each on a fresh random sample set from where the
    #: last stopped; a dense referee evaluation keeps the best endpoint (see simpleitk_engine).
    resample_rounds: int = 3
    #: After those rounds, restart the rigid stage from its result turned +/- this many degrees
    #: about each axis (6 more runs, the dense referee keeps the best); 0 turns it off. Fine
    #: micro-CT against MRI slices has rotational local optima a few degrees apart.
    rotation_restarts_deg: float = 0.0
    max_step_mm: float = 2.0
    min_step_mm: float = 0.005
    relaxation_factor: float = 0.6
    random_seed: int = 121212
    #: Threads when ``deterministic`` is off (None: ITK's default, every core).
    number_of_threads: Optional[int] = None
    #: Bit-identical transforms for the same inputs and settings, on any machine: filters with
    #: reductions and gradient optimisers run on one thread (ITK merges their per-thread sums in
    #: completion order: two 2-thread runs on the porcine pair differed by 0.35 mm), Powell on a
    #: fixed 2 threads (its metric values merge in a fixed order). See ``engines.base``.
    deterministic: bool = True
    #: Raise ``RegistrationFailedError`` when the result fails its own sanity checks.
    fail_on_sanity_check: bool = True
    min_final_overlap_fraction: float = 0.2
    #: Floor of the "shared information" check (MI / entropy at the result, see metrics); correct
    #: results measured 0.26-0.49 here, look-alike poses 0.12-0.15.
    min_explained_fraction: float = 0.18
    max_scale_deviation: float = 0.3

    @property
    def explored_rotation_deg(self) -> float:
        """Largest rotation from the start the search can justify (half turns when searched)."""
        if self.initialize_transform_mode == "search" and self.search_flips:
            return 180.0
        return self.search_max_angle_deg + 30.0

    def replace(self, **changes) -> RegistrationSettings:
        """A copy with ``changes`` applied and validated."""
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Raise ``InputError`` naming the first setting that cannot work."""
        if self.initialize_transform_mode not in INITIALIZE_MODES:
            raise InputError(
                f"unknown initialize_transform_mode {self.initialize_transform_mode!r}",
                f"use one of {', '.join(INITIALIZE_MODES)}",
            )
        if not self.transform_stages or any(s not in TRANSFORM_STAGES for s in self.transform_stages):
            raise InputError(
                f"transform_stages {self.transform_stages!r} is not a list of {', '.join(TRANSFORM_STAGES)}",
                "give at least one stage, for example ('Rigid',) or ('Rigid', 'Affine')",
            )
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        if self.transform_stages[0] != "Rigid":
            raise InputError("the first transform stage must be 'Rigid'", "start the stages with 'Rigid'")
        if self.sampling_percentage is not None and not 0.0 < self.sampling_percentage <= 1.0:
            raise InputError(
                f"sampling_percentage {self.sampling_percentage} is outside (0, 1]",
                "give a fraction such as 0.05 (5% of the voxels) or leave it to the planner",
            )
        if self.spacing_multiplier is not None and self.spacing_multiplier < 1.0:
            raise InputError(
                f"spacing_multiplier {self.spacing_multiplier} is below 1",
                "use 1 (no downsampling) or more, or leave it to the planner",
            )
        if self.resample_rounds < 1 or self.powell_sweeps < 1:
            raise InputError("resample_rounds and powell_sweeps must be at least 1", "raise them")
        if self.number_of_iterations < 1 or self.number_of_histogram_bins < 8:
            raise InputError(
                "number_of_iterations must be at least 1 and number_of_histogram_bins at least 8",
                "raise them",
            )
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            raise InputError(
                "shrink_factors and smoothing_sigmas_mm must have the same, non-zero length",
                "give one smoothing sigma per pyramid level",
            )
        if not 0.0 <= self.rotation_restarts_deg <= 45.0:
            raise InputError(
                f"rotation_restarts_deg {self.rotation_restarts_deg} is outside [0, 45]",
                "use 0 (off) or a few degrees, such as 4",
            )
        if self.roi_margin_mm < 0 or self.working_voxel_budget < 10_000:
            raise InputError("roi_margin_mm must be >= 0 and working_voxel_budget >= 10000", "raise them")


PRESETS = {
    # Clinical CT <-> MRI: work at ~2.5 mm, the MRI's slice spacing. Measured on the porcine pair:
    # 1.6 mm mean error to the reference at 2.5 mm vs 2.6 mm at 1.6 mm (the finer MI valley is rougher).
    "mri-ct": RegistrationSettings(preset="mri-ct", working_voxel_budget=400_000, max_working_spacing_mm=2.5),
    "mri-microct-knee": RegistrationSettings(
        preset="mri-microct-knee",
        roi_margin_mm=10.0,
        max_working_spacing_mm=1.0,
        working_voxel_budget=2_000_000,
        number_of_iterations=40,
        rotation_restarts_deg=4.0,
    ),
    "fast-preview": RegistrationSettings(
        preset="fast-preview",
        working_voxel_budget=400_000,
        max_working_spacing_mm=2.5,
        number_of_iterations=15,
        min_metric_samples=20_000,
        max_metric_samples=60_000,
        search_angle_step_deg=30.0,
        search_max_angle_deg=45.0,
        powell_sweeps=4,
        powell_value_tolerance=1e-4,
        resample_rounds=1,
    ),
}


def settings_for_preset(name: str, **overrides) -> RegistrationSettings:
    """The preset called ``name`` with ``overrides`` applied (``None`` values are ignored)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}", f"use one of {', '.join(sorted(PRESETS))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]


