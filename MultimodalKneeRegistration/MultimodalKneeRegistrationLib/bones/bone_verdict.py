"""One bone's verdict: the whole-volume result's checks and verdict, on the bone's own region.

Why: a bone's pose is a registration of its own, and can be wrong in the same ways (a look-alike
pose, a flat optimum, an optimiser that stopped short). It is judged by the same checks and looks
as the whole volume (``verdict.judge``), on the bone's working images and with its masked scorer, so
one set of limits means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import SimpleITK as sitk

from ..verdict.judge import Case, judge_in


@dataclass
class BoneVerdict:
    """Whether a bone's pose passed, how sure the verdict is (0-1), and the failed checks' sentences."""

    passed: bool
    confidence: float
    failures: List[str] = field(default_factory=list)
    #: Every check and look: name -> {value, limit, passed} (as the whole-volume report's ``sanity``).
    checks: Dict[str, dict] = field(default_factory=dict)


def bone_verdict(space, candidates: Sequence[Tuple[float, sitk.Transform]], start: sitk.Transform,
                 found: sitk.Transform, metric_before: Optional[float], metric_after: Optional[float], plan,
                 checks) -> BoneVerdict:
    """The verdict on ``found`` (sampled -> other), from ``start`` (the whole-volume pose).

    ``space`` is the bone's ``BoneSpace`` (working and search images, masked scorer, centre);
    ``candidates`` the other poses scored on it, best first (the competitors); ``checks`` the limits
    (``settings.checks``).

    Example:
        >>> bone_verdict(space, ranked, start, found, -0.7, -1.0, plan, settings.checks).passed  # doctest: +SKIP
        True
    """
    case = Case(found, start, metric_before, metric_after, found, start, space.sampled, space.other, space.other,
                False)
    verdict = judge_in(case, space, candidates, plan, checks, plan.initialize_transform_mode)
    return BoneVerdict(verdict.passed, verdict.confidence, verdict.failures, verdict.sanity)
