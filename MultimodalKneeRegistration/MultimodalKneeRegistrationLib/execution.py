"""How ITK work is executed: thread counts that keep results repeatable, and registration methods.

Why: ITK merges per-thread sums (Mattes histograms, centroids, metric gradients) in completion
order, so the same run on 2 threads gave transforms 0.35 mm apart on the porcine pair. With
``deterministic`` (the default) every step here gets a thread count that repeats bit for bit on any
machine: one thread for reductions and gradients, a fixed 2 for Powell's value-only evaluations.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import SimpleITK as sitk

from .progress import Progress

#: Threads while a gradient-free optimiser (Powell) executes when deterministic. Metric *values* are
#: summed per thread and merged in a fixed order, so a given thread count repeats exactly (another
#: count changes the last bits and, through the optimiser, the result: hence one fixed count on every
#: machine). Metric *gradients* are not: a gradient optimiser on 2 threads gave a different transform
#: each run, so those keep one thread. Measured on 2 cores: a Powell run took 1.6 s on 2 threads and
#: 5.5 s on one.
DETERMINISTIC_VALUE_THREADS = 2


def new_registration_method(execution) -> sitk.ImageRegistrationMethod:
    """An ``ImageRegistrationMethod`` honouring ``execution.deterministic`` (one metric thread)."""
    method = sitk.ImageRegistrationMethod()
    if execution.deterministic:
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


def search_workers(execution) -> int:
    """Threads sharing the search's FFTs: ``number_of_threads`` when set (``--threads`` caps it), else
    every core up to 8. Each rotation's correlation is computed alone, so any count gives the same result."""
    return int(execution.number_of_threads or min(8, os.cpu_count() or 1))


def parallel_map(work: Callable, items: list, workers: int, progress: Progress, message: str,
                 batch: Optional[int] = None, during: str = "during the initial search") -> list:
    """``[work(item) for item in items]`` on ``workers`` threads, in order, reporting and honouring cancel
    between batches (``batch`` items, default ``workers``) from the calling thread only: a Slicer progress
    callback processes Qt events, which must not happen on another thread. ``during`` ends the
    cancellation message ("registration cancelled during ...").

    Why threads: numpy's FFTs and most array work, and SimpleITK filters, release the GIL. Each item is
    computed alone, so any thread count gives the same list.
    """
    batch = batch or max(1, workers)
    results: list = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(items), batch):
            progress.check_cancel(during)
            progress.report(start / max(1, len(items)), f"{message} ({start}/{len(items)})")
            results.extend(pool.map(work, items[start:start + batch]))
    return results


def preparation_threads(execution) -> Optional[int]:
    """Threads for everything but Powell: threaded reductions (centroids, statistics, metric
    gradients) were not repeatable; two 2-thread runs on the porcine pair differed by 0.35 mm."""
    return 1 if execution.deterministic else execution.number_of_threads


def execute_threads(execution, uses_gradient: bool) -> Optional[int]:
    """Threads while a registration method executes (see ``DETERMINISTIC_VALUE_THREADS``)."""
    if execution.deterministic:
        return 1 if uses_gradient else DETERMINISTIC_VALUE_THREADS
    return execution.number_of_threads


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


def stop_on_cancel(method: sitk.ImageRegistrationMethod, progress: Progress, fraction, message: str) -> list:
    """Report each iteration of ``method`` and stop it once cancellation is asked for.

    ITK cannot raise from inside an iteration callback, so the method is stopped and the returned
    flag (``flag[0]``) tells the caller to raise once ``Execute`` has returned.
    """
    stopped = [False]

    def on_iteration() -> None:
        progress.report(fraction(), message)
        if progress.cancelled and not stopped[0]:
            stopped[0] = True
            method.StopRegistration()

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    return stopped
