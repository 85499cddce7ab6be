"""The ``auto`` preset: decide from the images whether this is an MRI with a CT or with a micro-CT.

Why: the command line and the panel used to default to ``mri-ct`` even when one image was a 0.1 mm
micro-CT, and a user who does not know our presets should not have to. The images say it: a micro-CT
has voxels several times finer than the MRI's and covers a small part of its field of view; a CT
stores Hounsfield units (air near -1000). The choice and its reasons go into the plan's explanation;
an explicit preset still overrides it, and so does every knob the user set.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import physical_box
from ..io.sources import pixels
from ..settings import PRESETS, RegistrationSettings

#: A fine image with voxels at most this big (mm) is a micro-CT whatever the other image is.
MICROCT_VOXEL_MM = 0.15
#: Or: voxels this many times finer per axis than the other image's, inside 1/8 of its field of view.
MICROCT_RATIO = 3.0
MICROCT_FOV_FRACTION = 1.0 / 8.0


def resolve_preset(settings: RegistrationSettings, fixed, moving) -> Tuple[RegistrationSettings, Optional[str]]:
    """``settings`` with ``auto`` replaced by the preset the images call for, and a sentence why.

    Knobs the user changed on top of ``auto`` are kept. Other presets pass through unchanged.

    Example:
        >>> settings, why = resolve_preset(settings_for_preset("auto"), mr, microct)  # doctest: +SKIP
        >>> settings.preset, why  # doctest: +SKIP
        ('mri-microct-knee', 'Preset auto chose mri-microct-knee: the moving image has 0.1 mm voxels ...')
    """
    if settings.preset != "auto":
        return settings, None
    choice, reasons = classify_pair(fixed, moving)
    return with_preset(settings, choice), f"Preset auto chose {choice}: {reasons}."


def resolve_preset_from_geometry(settings: RegistrationSettings, fixed, moving) -> RegistrationSettings:
    """``resolve_preset``'s settings without reading a voxel: the choice rests on the geometry alone.

    Why: a streamed micro-CT is read once for everything a run needs, so the working image's block
    factors (which depend on the preset) must be known before any voxel is read.
    """
    if settings.preset != "auto":
        return settings
    return with_preset(settings, _choose(fixed, moving)[0])


def with_preset(settings: RegistrationSettings, choice: str) -> RegistrationSettings:
    """Preset ``choice`` with the knobs the user changed on top of ``auto`` kept."""
    base = PRESETS["auto"].flat()
    changed = {key: value for key, value in settings.flat().items() if value != base[key]}
    return PRESETS[choice].replace(**changed)


def classify_pair(fixed, moving) -> Tuple[str, str]:
    """("mri-microct-knee" or "mri-ct", the reasons in words) from voxel sizes, fields of view, intensities."""
    choice, facts = _choose(fixed, moving)
    ct_words = [f"the {name} image stores Hounsfield units (air near -1000)"
                for name, image in (("fixed", fixed), ("moving", moving)) if in_hounsfield_units(image)]
    facts += "; " + " and ".join(ct_words) if ct_words else ""
    if choice == "mri-microct-knee":
        return choice, f"{facts}: a micro-CT (or a fine, small scan) inside a larger one"
    return choice, f"{facts}: a clinical CT and an MRI of similar coverage"


def _choose(fixed, moving) -> Tuple[str, str]:
    """(the preset, the geometric facts in words): voxel sizes and fields of view only, no voxel read."""
    volume = {name: float(np.prod(image.GetSpacing())) for name, image in (("fixed", fixed), ("moving", moving))}
    fine = "fixed" if volume["fixed"] <= volume["moving"] else "moving"
    coarse = "moving" if fine == "fixed" else "fixed"
    images = {"fixed": fixed, "moving": moving}
    ratio = (volume[coarse] / volume[fine]) ** (1.0 / 3.0)
    fov = physical_box(images[fine]).volume / max(physical_box(images[coarse]).volume, 1e-9)
    largest = max(images[fine].GetSpacing())
    facts = (f"the {fine} image's voxels are {largest:.3g} mm at most and {ratio:.1f}x finer per axis than the "
             f"{coarse} image's, in {100 * fov:.2g}% of its field of view")
    if largest <= MICROCT_VOXEL_MM or (ratio >= MICROCT_RATIO and fov <= MICROCT_FOV_FRACTION):
        return "mri-microct-knee", facts
    return "mri-ct", facts


def in_hounsfield_units(image) -> bool:
    """True for images whose darkest voxels sit near -1000 (air in HU) and whose brightest pass +300.

    A streamed source is judged on the run's one preview (``io.sources.PREVIEW_VOXELS``), subsampled
    below; a preview of its own would cost another pass over a multi-GB file.
    """
    array = sitk.GetArrayViewFromImage(pixels(image))
    step = max(1, int(round((array.size / 1_000_000) ** (1 / 3))))
    low, high = np.percentile(array[::step, ::step, ::step], [1.0, 99.9])
    return bool(-1200.0 <= low <= -500.0 and high > 300.0)
