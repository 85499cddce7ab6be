"""The ``auto`` preset: decide from the images whether this is an MRI with a CT or with a micro-CT.

Why: the command line and the panel used to default to ``mri-ct`` even when one image was a 0.1 mm
micro-CT, and a user who does not know our presets should not have to. The images say it: a micro-CT
has voxels several times finer than the MRI's and covers a small part of its field of view; a CT
stores Hounsfield units (air near -1000). The choice and its reasons go into the plan's explanation;
an explicit preset still overrides it, and so does every knob the user set
(``plan_resolution.resolve_plan`` applies them).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from ..io.sources import pixels
from ..settings import MICROCT_PRESET
from .roles import ImageRoles

#: A fine image with voxels at most this big (mm) is a micro-CT whatever the other image is.
MICROCT_VOXEL_MM = 0.15
#: Or: voxels this many times finer per axis than the other image's, inside 1/8 of its field of view.
#: 2.5, not 3: a 0.3 mm micro-CT is only 2.85x finer than a 0.5 x 0.5 x 2.5 mm knee MRI (cube root of
#: the voxel volumes), and a clinical CT is kept out by the field of view, not by this ratio.
MICROCT_RATIO = 2.5
MICROCT_FOV_FRACTION = 1.0 / 8.0


def classify_pair(fixed, moving) -> Tuple[str, str]:
    """("mri-microct-knee" or "mri-ct", the reasons in words) from voxel sizes, fields of view, intensities."""
    choice, facts = choose_preset(fixed, moving)
    ct_words = [f"the {name} image stores Hounsfield units (air near -1000)"
                for name, image in (("fixed", fixed), ("moving", moving)) if in_hounsfield_units(image)]
    facts += "; " + " and ".join(ct_words) if ct_words else ""
    if choice == MICROCT_PRESET:
        return choice, f"{facts}: a micro-CT (or a fine, small scan) inside a larger one"
    return choice, f"{facts}: a clinical CT and an MRI of similar coverage"


def choose_preset(fixed, moving) -> Tuple[str, str]:
    """(the preset, the geometric facts in words): voxel sizes and fields of view only, no voxel read.

    Why apart from ``classify_pair``: a streamed micro-CT is read once for everything a run needs,
    so the working image's block factors (which depend on the preset) must be known before any
    voxel is read (``reading``); the Hounsfield test only adds words.
    """
    roles = ImageRoles.of(fixed, moving)
    fov = roles.fine_fov_fraction
    largest = max(roles.images[roles.fine].GetSpacing())
    facts = (f"the {roles.fine} image's voxels are {largest:.3g} mm at most and {roles.ratio:.1f}x finer per axis "
             f"than the {roles.coarse} image's, in {100 * fov:.2g}% of its field of view")
    if largest <= MICROCT_VOXEL_MM or (roles.ratio >= MICROCT_RATIO and fov <= MICROCT_FOV_FRACTION):
        return MICROCT_PRESET, facts
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
