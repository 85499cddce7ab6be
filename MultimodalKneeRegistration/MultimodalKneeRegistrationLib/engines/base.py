"""What a registration engine must implement, and nothing else.

Why: ``register`` is the one registration path; an engine only optimises between two working images
the pipeline prepared, from the start the search found, with what the plan says. Planning, the
search, cropping, the metric report and the checks are the pipeline's, so every engine's result is
prepared, measured and checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol

import SimpleITK as sitk

from ..progress import Progress
from ..results import StageResult


@dataclass
class EngineOutput:
    """Transform found by an engine (maps ``fixed`` points to ``moving`` points) and its stages."""

    transform: sitk.Transform
    stages: List[StageResult] = field(default_factory=list)


class RegistrationEngine(Protocol):
    """Optimises a linear transform between two prepared working images.

    ``fixed`` is the image the metric samples (the smaller field of view); ``initial`` maps its
    points into ``moving`` (cropped to ``fixed``'s footprint). ``plan`` is the only source of
    settings (``plan.optimizer``, ``plan.execution``, sampling, bins, pyramid). Engines report
    progress in [0, 1] of ``progress`` and raise ``CancelledError`` promptly once
    ``progress.cancelled``. An engine that cannot run or crashes (a missing program, a non-zero exit
    status) raises ``EngineError``; a result the images do not support is the verdict's to refuse.
    ``mask`` (a binary image anywhere over ``fixed``; per bone) restricts the metric to ``fixed``'s
    voxels inside it; an engine that cannot honour it raises ``InputError``.
    """

    name: str
    #: Whether ``run`` honours ``mask``: the pipeline hands a micro-CT's reconstruction cylinder only to
    #: an engine that does (the padding is filled either way, see ``steps.field_of_view``).
    takes_mask: bool

    def run(
        self, fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, plan, progress: Progress,
        mask: Optional[sitk.Image] = None,
    ) -> EngineOutput: ...
