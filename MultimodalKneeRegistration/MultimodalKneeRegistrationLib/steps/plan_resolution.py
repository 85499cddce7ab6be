"""``resolve_plan``: the settings a run uses and its plan, worked out once for every front end.

Why: ``register``, ``knee-register inspect`` and per-bone each turned a preset and the user's knobs
into settings on their own. ``inspect`` planned without resolving ``auto`` (it showed another plan
than ``register`` ran), and ``auto`` kept only the knobs that differed from its own values, so
``--iterations 15`` on a micro-CT pair became the micro-CT preset's 40 (15 is ``auto``'s own value).
Here the preset is resolved from the images first, and the user's overrides, an explicit record of
the setting names they set, are applied last, whatever their values.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from ..io.sources import VolumeSource
from ..settings import DEFAULT_PRESET, RegistrationSettings, settings_for_preset, user_overrides
from .auto_preset import choose_preset, classify_pair
from .planning import RegistrationPlan, plan_registration


def resolve_plan(
    fixed, moving, preset: str = DEFAULT_PRESET, overrides: Optional[Mapping[str, Any]] = None
) -> Tuple[RegistrationSettings, RegistrationPlan]:
    """(the settings the run uses, its plan) for ``preset`` with ``overrides`` (flat names) set last.

    ``auto`` becomes the preset the images call for (``auto_preset.classify_pair``), and the plan's
    explanation says why, and so does each input read in slabs (a ``VolumeSource``). Only geometry
    and a preview of intensities are read, so headers and sources will do.

    Example:
        >>> settings, plan = resolve_plan(mr, microct, "auto", {"number_of_iterations": 15})  # doctest: +SKIP
        >>> settings.preset, settings.optimizer.number_of_iterations  # doctest: +SKIP
        ('mri-microct-knee', 15)
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    why = None
    if preset == "auto":
        preset, reasons = classify_pair(fixed, moving)
        why = f"Preset auto chose {preset}: {reasons}."
    settings = settings_for_preset(preset, **overrides)
    plan = plan_registration(fixed, moving, settings)
    plan = plan.with_note(why) if why else plan
    for source in (s for s in (fixed, moving) if isinstance(s, VolumeSource)):
        plan = plan.with_note(source.note)
    return settings, plan


def plan_for(fixed, moving, settings: RegistrationSettings) -> Tuple[RegistrationSettings, RegistrationPlan]:
    """``resolve_plan`` for a settings object: its preset and ``user_overrides(settings)``."""
    return resolve_plan(fixed, moving, settings.preset, user_overrides(settings))


def settings_from_geometry(fixed, moving, settings: RegistrationSettings) -> RegistrationSettings:
    """The settings ``plan_for`` resolves, without reading a voxel (``auto`` chooses from geometry).

    Why: a streamed input is read once for every block average the run needs (``reading``), and
    which averages those are depends on the preset.
    """
    preset = choose_preset(fixed, moving)[0] if settings.preset == "auto" else settings.preset
    return settings_for_preset(preset, **user_overrides(settings))
