"""The interface every registration engine implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Protocol

import SimpleITK as sitk

from ..results import StageResult

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


def new_registration_method(settings) -> sitk.ImageRegistrationMethod:
    """An ``ImageRegistrationMethod`` honouring ``settings.deterministic`` (one metric thread)."""
    method = sitk.ImageRegistrationMethod()
    if getattr(settings, "deterministic", False):
        method.SetNumberOfThreads(1)
    return method


@dataclass
class EngineOutput:
    """Transform found by an engine (maps ``fixed`` points to ``moving`` points) and its stages."""

    transform: sitk.Transform
    stages: List[StageResult] = field(default_factory=list)


class RegistrationEngine(Protocol):
    """Optimises a linear transform between two prepared working images.

    ``fixed`` is the image the metric samples; ``initial`` maps its points into ``moving``.
    Engines report progress in [0, 1] and stop promptly (raising ``CancelledError``) once
    ``should_cancel`` returns true.
    """

    name: str

    def run(
        self,
        fixed: sitk.Image,
        moving: sitk.Image,
        initial: sitk.Transform,
        plan,
        settings,
        progress: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
    ) -> EngineOutput: ...
