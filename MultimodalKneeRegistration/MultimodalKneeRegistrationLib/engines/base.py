"""The interface every registration engine implements."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Protocol

import SimpleITK as sitk

from ..results import StageResult

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


#: Threads while a gradient-free optimiser (Powell) executes when ``settings.deterministic``. Metric
#: *values* are summed per thread and merged in a fixed order, so a given thread count repeats
#: exactly (another count changes the last bits and, through the optimiser, the result: hence one
#: fixed count on every machine). Metric *gradients* are not: a gradient optimiser on 2 threads
#: gave a different transform each run, so those keep one thread. Measured on 2 cores: a Powell
#: run took 1.6 s on 2 threads and 5.5 s on one.
DETERMINISTIC_VALUE_THREADS = 2


def new_registration_method(settings) -> sitk.ImageRegistrationMethod:
    """An ``ImageRegistrationMethod`` honouring ``settings.deterministic`` (one metric thread)."""
    method = sitk.ImageRegistrationMethod()
    if getattr(settings, "deterministic", False):
        method.SetNumberOfThreads(1)
    return method


def without_gradient_images(method: sitk.ImageRegistrationMethod) -> sitk.ImageRegistrationMethod:
    """Stop ``method`` precomputing gradient images of both inputs; for metric values only.

    Why: by default ITK's metric filters both images into 3-vector gradient images before the first
    evaluation, even when only values are asked for (Powell, a metric report). On the porcine pair
    that was 30 MB, the step that took peak memory from 1.42x to 1.57x of the CT. Values are the
    same: the gradients are only used for derivatives, which are then computed where needed.
    """
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    return method


def mattes_value(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    settings,
    bins: int,
    sampling_fraction: Optional[float],
    seed: int,
) -> Optional[float]:
    """Mattes MI (negative; lower is better) of ``moving`` seen from ``fixed`` through ``transform``.

    ``sampling_fraction`` of the fixed voxels at random (``seed``), or every voxel when ``None``.
    ``None`` when no sample lands in the moving image (no overlap at this pose: no value).
    """
    method = without_gradient_images(new_registration_method(settings))
    method.SetMetricAsMattesMutualInformation(bins)
    if sampling_fraction is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(sampling_fraction, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return None


def preparation_threads(settings) -> Optional[int]:
    """Threads for everything but Powell: threaded reductions (centroids, statistics, metric
    gradients) were not repeatable; two 2-thread runs on the porcine pair differed by 0.35 mm."""
    if getattr(settings, "deterministic", False):
        return 1
    return getattr(settings, "number_of_threads", None)


def execute_threads(settings, uses_gradient: bool) -> Optional[int]:
    """Threads while a registration method executes (see ``DETERMINISTIC_VALUE_THREADS``)."""
    if getattr(settings, "deterministic", False):
        return 1 if uses_gradient else DETERMINISTIC_VALUE_THREADS
    return getattr(settings, "number_of_threads", None)


@contextmanager
def global_threads(count: Optional[int]) -> Iterator[None]:
    """ITK's global default thread count set to ``count`` inside the block (``None``: unchanged)."""
    if not count:
        yield
        return
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(count))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


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
