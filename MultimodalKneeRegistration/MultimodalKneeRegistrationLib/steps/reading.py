"""Read each streamed input ONCE per run, for every block average the run will ask it for.

Why: a registration of an 8 GB micro-CT read the file three times: the preview (input checks,
inspection, QC picture), the auto preset's own smaller preview, the working image; with
resampling, a fourth. Each was a full pass over the disk (14 s cold for 8 GB, more than all the
averaging). Every factor a run needs follows from the headers and the settings (the plan needs only
geometry, ``auto`` chooses from geometry too), so they are computed first and read in one pass per
source (``VolumeSource.block_averages``); the later steps find them in the source's cache.

Example:
    >>> read_inputs(mri, microct_source, settings, progress.sub(0.0, 0.3))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..io.sources import PREVIEW_VOXELS, VolumeSource, preview_factors
from ..progress import Progress
from ..settings import RegistrationSettings
from .plan_resolution import settings_from_geometry
from .planning import plan_registration
from .preprocessing import shrink_factors_for_spacing

Factors = Tuple[int, int, int]


def factors_needed(fixed, moving, settings: RegistrationSettings, resample_grid=None) -> Dict[str, List[Factors]]:
    """For "fixed" and "moving" that are sources: every block factors a run asks them for.

    The preview (checks, inspection, QC, the auto preset's Hounsfield test), the plan's working
    grid, and (``resample_grid``: the grid ``registered_moving`` is written on) the moving image's
    copy averaged to about that grid's spacing (``pipeline.resample_moving``).
    """
    needed: Dict[str, List[Factors]] = {}
    if not any(isinstance(image, VolumeSource) for image in (fixed, moving)):
        return needed
    plan = plan_registration(fixed, moving, settings_from_geometry(fixed, moving, settings))
    for name, image, shrink in (("fixed", fixed, plan.fixed_shrink), ("moving", moving, plan.moving_shrink)):
        if isinstance(image, VolumeSource):
            needed[name] = [preview_factors(image.GetSize(), PREVIEW_VOXELS), tuple(shrink)]
    if resample_grid is not None and "moving" in needed:
        needed["moving"].append(shrink_factors_for_spacing(moving.GetSpacing(), min(resample_grid.GetSpacing())))
    return needed


def read_inputs(fixed, moving, settings: RegistrationSettings, progress: Optional[Progress] = None,
                resample_grid=None) -> None:
    """Read what ``factors_needed`` lists, one pass per source; nothing when all are read already.

    ``progress`` shows "reading the moving image (x %)" and its cancel stops the read between slabs
    (``CancelledError``).
    """
    progress = progress or Progress()
    images = {"fixed": fixed, "moving": moving}
    todo = {name: factors for name, factors in factors_needed(fixed, moving, settings, resample_grid).items()
            if images[name].missing(factors)}
    weights = {name: float(images[name].header.nbytes) for name in todo}
    total, start = max(sum(weights.values()), 1.0), 0.0
    for name, factors in todo.items():
        share = weights[name] / total
        images[name].block_averages(factors, progress.sub(start, start + share))
        start += share
    progress.done()


def needs_reading(fixed, moving, settings: RegistrationSettings, resample_grid=None) -> bool:
    """True when ``read_inputs`` would read anything (to give it a share of the progress bar)."""
    images = {"fixed": fixed, "moving": moving}
    return any(images[name].missing(factors)
               for name, factors in factors_needed(fixed, moving, settings, resample_grid).items())
