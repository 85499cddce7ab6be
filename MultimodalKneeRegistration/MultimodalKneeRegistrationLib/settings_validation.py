"""Checks that a ``RegistrationSettings`` can work, each failure one ``InputError`` saying what to do.

Why: a knob outside its range (a sampling fraction of 5 instead of 0.05, a spacing multiplier of
0.5) must be refused before an hour of work, in words a user can act on, whichever front end (the
command line, the Slicer panel, a script) set it.
"""

from __future__ import annotations

from .errors import InputError


def validate_settings(settings) -> None:
    """Raise ``InputError`` naming the first setting of ``settings`` that cannot work."""
    for check in (_check_modes, _check_choices, _check_budgets, _check_search, _check_optimizer):
        check(settings)


def _check_modes(settings) -> None:
    from .settings import INITIALIZE_MODES, OPTIMIZERS, TRANSFORM_STAGES

    mode = settings.choices.initialize_transform_mode
    if mode not in INITIALIZE_MODES:
        raise InputError(f"unknown initialize_transform_mode {mode!r}", f"use one of {', '.join(INITIALIZE_MODES)}")
    stages = settings.optimizer.transform_stages
    if not stages or any(s not in TRANSFORM_STAGES for s in stages):
        raise InputError(
            f"transform_stages {stages!r} is not a list of {', '.join(TRANSFORM_STAGES)}",
            "give at least one stage, for example ('Rigid',) or ('Rigid', 'Affine')",
        )
    if stages[0] != "Rigid":
        raise InputError("the first transform stage must be 'Rigid'", "start the stages with 'Rigid'")
    if settings.search.orientations not in ("all", "near"):
        raise InputError(f"unknown search_orientations {settings.search.orientations!r}", "use 'all' or 'near'")
    if settings.optimizer.method not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {settings.optimizer.method!r}", f"use one of {', '.join(OPTIMIZERS)}")


def _check_choices(settings) -> None:
    choices = settings.choices
    if choices.sampling_percentage is not None and not 0.0 < choices.sampling_percentage <= 1.0:
        raise InputError(
            f"sampling_percentage {choices.sampling_percentage} is outside (0, 1]",
            "give a fraction such as 0.05 (5% of the voxels) or leave it to the planner",
        )
    if choices.spacing_multiplier is not None and choices.spacing_multiplier < 1.0:
        raise InputError(
            f"spacing_multiplier {choices.spacing_multiplier} is below 1",
            "use 1 (no downsampling) or more, or leave it to the planner",
        )
    if choices.roi_margin_mm < 0:
        raise InputError(f"roi_margin_mm {choices.roi_margin_mm} is negative", "use 0 or more")


def _check_search(settings) -> None:
    search = settings.search
    if len(search.level_steps_deg) != len(search.level_keep):
        raise InputError(
            f"search_level_steps_deg {search.level_steps_deg} and search_level_keep {search.level_keep} "
            "differ in length",
            "give one number of poses to keep for each refinement level",
        )
    if any(step <= 0 for step in search.level_steps_deg) or any(keep < 1 for keep in search.level_keep):
        raise InputError("refinement levels need steps above 0 deg and at least one pose kept", "fix the levels")
    if search.final_candidates < 1:
        raise InputError("search_final_candidates must be at least 1", "raise it")
    if search.polish_evaluations < 0:
        raise InputError("search_polish_evaluations must be 0 (off) or more", "use 0 to turn the polish off")
    if search.retry_fill_rotations < 0:
        raise InputError("search_retry_fill_rotations must be 0 (no retry) or more", "use 0 to turn the retry off")


def _check_budgets(settings) -> None:
    planning = settings.planning
    if planning.working_voxel_budget < 10_000:
        raise InputError("working_voxel_budget must be at least 10000", "raise it")
    if planning.number_of_histogram_bins < 8:
        raise InputError("number_of_histogram_bins must be at least 8", "raise it")
    if len(planning.shrink_factors) != len(planning.smoothing_sigmas_mm) or not planning.shrink_factors:
        raise InputError(
            "shrink_factors and smoothing_sigmas_mm must have the same, non-zero length",
            "give one smoothing sigma per pyramid level",
        )


def _check_optimizer(settings) -> None:
    optimizer = settings.optimizer
    if optimizer.resample_rounds < 1 or optimizer.powell_sweeps < 1:
        raise InputError("resample_rounds and powell_sweeps must be at least 1", "raise them")
    if optimizer.number_of_iterations < 1:
        raise InputError("number_of_iterations must be at least 1", "raise it")
    if not 0.0 <= optimizer.rotation_restarts_deg <= 45.0:
        raise InputError(
            f"rotation_restarts_deg {optimizer.rotation_restarts_deg} is outside [0, 45]",
            "use 0 (off) or a few degrees, such as 4",
        )


def settings_from_dict(cls, data, groups):
    """``cls`` (``RegistrationSettings``) from its ``to_dict`` form: JSON lists back to tuples,
    unknown keys refused (a report from another version says so instead of running otherwise)."""
    import dataclasses

    if not isinstance(data, dict):
        raise InputError("the settings are not a JSON object", "give report.json's result.settings")
    unknown = sorted(set(data) - {"preset", "overrides", *groups})
    if unknown:
        raise InputError(f"unknown settings {', '.join(unknown)}", "give settings written by this version's report")
    values = {}
    for group, group_cls in groups.items():
        stored = dict(data.get(group) or {})
        names = {f.name: f for f in dataclasses.fields(group_cls)}
        extra = sorted(set(stored) - set(names))
        if extra:
            raise InputError(f"unknown {group} settings {', '.join(extra)}", "give settings written by this version")
        values[group] = group_cls(**{k: _tupled(names[k], v) for k, v in stored.items()})
    from .settings import FLAT_NAMES, PRESETS

    preset, overrides = data.get("preset", "mri-ct"), tuple(data.get("overrides") or ())
    if preset not in PRESETS or not set(overrides) <= set(FLAT_NAMES):
        raise InputError(f"unknown preset {preset!r} or overridden setting in {list(overrides)}",
                         f"use presets {', '.join(sorted(PRESETS))} and flat setting names")
    settings = cls(preset=preset, overrides=overrides, **values)
    settings.validate()
    return settings


def _tupled(field, value):
    """JSON keeps tuples as lists; a field whose default is a tuple gets one back."""
    return tuple(value) if isinstance(value, list) and isinstance(field.default, tuple) else value
