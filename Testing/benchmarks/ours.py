"""Our registration (``MultimodalKneeRegistrationLib.register``) and the one-pass floor, as worker tools.

Why: ours runs in its own process like every peer, so its wall time and peak memory are measured
the same way. A run that fails its own sanity checks raises ``RegistrationFailedError``: the user gets
no transform, so the benchmark records it as "rejected" (a failure), keeping the rejected transform
only to say how far off it was.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import SimpleITK as sitk
from probe import Probe
from rigid import transform_to_matrix


def run_ours(job: Dict[str, Any], probe: Probe) -> Tuple[np.ndarray, Dict[str, Any]]:
    from MultimodalKneeRegistrationLib import register, settings_for_preset
    from MultimodalKneeRegistrationLib.errors import RegistrationFailedError

    probe.mark("imported")
    fixed = sitk.ReadImage(job["fixed"])
    moving = sitk.ReadImage(job["moving"])
    probe.mark("loaded")
    settings = settings_for_preset(job["preset"], number_of_threads=job.get("threads"))
    extra: Dict[str, Any] = {"preset": job["preset"], "engine": job.get("engine", "SimpleITK")}
    engine = "SimpleITK"
    if job.get("engine") == "BRAINSFit":
        from MultimodalKneeRegistrationLib.engines.brainsfit import BrainsFitEngine, BrainsFitExecutable

        engine = BrainsFitEngine(BrainsFitExecutable(job["brainsfit"]))
        probe.mark("spawned")  # BRAINSFit runs as a child process: its peak memory counts too
    try:
        result = register(fixed, moving, settings, engine=engine)
    except RegistrationFailedError as error:
        result = getattr(error, "result", None)
        extra["rejected"] = str(error)
        if result is None:
            raise
    probe.mark("done")
    plan = result.plan
    extra.update(
        stages=[stage.to_dict() for stage in result.stages],
        timings={k: round(v, 3) for k, v in result.timings.items()},
        warnings=list(result.warnings),
        passed_sanity_checks=bool(result.passed_sanity_checks),
        plan={
            "fine_image": plan.fine_image,
            "fixed_shrink": list(plan.fixed_shrink),
            "moving_shrink": list(plan.moving_shrink),
            "working_spacing_mm": plan.working_spacing_mm,
            "sampling_percentage": plan.sampling_percentage,
            "metric_samples": plan.metric_samples,
        },
    )
    return transform_to_matrix(result.transform), extra


def run_floor(job: Dict[str, Any], probe: Probe) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Read the fine image and block-average it once to ours' working resolution: the time and memory
    no registration of this volume can go below (it has to look at every voxel at least once)."""
    from MultimodalKneeRegistrationLib import settings_for_preset
    from MultimodalKneeRegistrationLib.steps.planning import plan_registration
    from MultimodalKneeRegistrationLib.steps.preprocessing import downsample

    probe.mark("imported")
    fixed = sitk.ReadImage(job["fixed"])
    moving = sitk.ReadImage(job["moving"])
    probe.mark("loaded")
    plan = plan_registration(fixed, moving, settings_for_preset(job["preset"]))
    name = plan.fine_image
    image, shrink = (fixed, plan.fixed_shrink) if name == "fixed" else (moving, plan.moving_shrink)
    small = downsample(image, shrink)
    probe.mark("done")
    return np.eye(4), {"shrink": list(shrink), "downsampled_size": list(small.GetSize())}
