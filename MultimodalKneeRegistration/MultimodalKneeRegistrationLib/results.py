"""What one registration run hands back: the transform plus everything needed to trust it.

Why: BRAINSFit hands back a transform and an exit code of 0 even when it is 38 mm wrong. Our
result carries the metric before/after, the optimizer's stop conditions, timings, warnings and the
verdict (``verdict.record.Verdict``), so the CLI, the report and the Slicer panel can show them.
The plan stays a record of what was decided before the run; what the run learned (the ROI it cut,
which start it kept, notes about both) is kept here, in ``facts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import SimpleITK as sitk

from .geometry import Box, rotation_angle_deg, scale_factors, transform_to_matrix
from .settings import DEFAULT_ENGINE
from .verdict.record import Verdict


@dataclass(frozen=True)
class RunFacts:
    """What the run learned, as opposed to what the plan decided before it."""

    #: The part of the large image kept for the engine (the small image's footprint plus the margin).
    roi: Optional[Box] = None
    #: Sentences about what happened (the crop, the start kept), after the plan's own.
    notes: Tuple[str, ...] = ()
    #: The initialisation the kept result ran with, when not the plan's (the user's start refined
    #: locally after the search's best pose failed the checks: "Off").
    initialization: Optional[str] = None


@dataclass
class StageResult:
    """One optimisation stage (search, Rigid, Affine ...)."""

    name: str
    iterations: int
    stop_condition: str
    #: Mattes MI at the stage's endpoint, on the run's one metric sample set (see ``register``).
    metric_value: float
    seconds: float
    #: Where the stage ended (sampled -> other); not written to the report.
    endpoint: Optional[sitk.Transform] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "iterations": self.iterations,
            "stop_condition": self.stop_condition,
            "metric_value": round(float(self.metric_value), 6),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class RegistrationResult:
    """Outcome of ``register``: ``transform`` maps fixed-space LPS points to moving-space points."""

    transform: sitk.Transform
    initial_transform: sitk.Transform
    plan: Any  # planning.RegistrationPlan (typed loosely to avoid an import cycle)
    settings: Any  # settings.RegistrationSettings
    metric_before: float
    metric_after: float
    stages: List[StageResult] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    #: The engine that optimised (``SimpleITK``, ``BRAINSFit``).
    engine: str = DEFAULT_ENGINE
    #: Every check, the confidence, the competing pose and the evidence (``verdict.judge``).
    verdict: Verdict = field(default_factory=lambda: Verdict(()))
    facts: RunFacts = field(default_factory=RunFacts)

    @property
    def passed_sanity_checks(self) -> bool:
        return self.verdict.passed

    @property
    def sanity(self) -> Dict[str, Any]:
        """``{check name: {value, limit, passed}}`` (``Verdict.sanity``)."""
        return self.verdict.sanity

    @property
    def overlap_after(self) -> Optional[float]:
        return self.verdict.overlap_after

    @property
    def evidence(self) -> Any:
        return self.verdict.evidence

    @property
    def confidence(self) -> Optional[float]:
        return self.verdict.confidence

    @property
    def explanation(self) -> Tuple[str, ...]:
        """The plan's sentences, then the run's (``facts.notes``)."""
        return tuple(getattr(self.plan, "explanation", ())) + self.facts.notes

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (the report adds inputs and versions around it)."""
        matrix = transform_to_matrix(self.transform)
        return {
            "transform": {
                "class": self.transform.GetName(),
                "parameters": list(self.transform.GetParameters()),
                "fixed_parameters": list(self.transform.GetFixedParameters()),
                "matrix_lps_fixed_to_moving": matrix.round(8).tolist(),
                "rotation_deg": round(rotation_angle_deg(matrix), 4),
                "scale_factors": scale_factors(matrix).round(6).tolist(),
            },
            "initial_transform_matrix_lps": transform_to_matrix(self.initial_transform).round(8).tolist(),
            "plan": self.plan.to_dict(self.facts) if hasattr(self.plan, "to_dict") else self.plan,
            "settings": self.settings.to_dict() if self.settings is not None else None,
            "metric": {
                "name": "Mattes mutual information (negative: lower is better)",
                "before": round(float(self.metric_before), 6),
                "after": round(float(self.metric_after), 6),
            },
            "stages": [s.to_dict() for s in self.stages],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "sanity": self.sanity,
            "passed_sanity_checks": self.passed_sanity_checks,
            "overlap_after": self.overlap_after,
            "engine": self.engine,
            "evidence": self.evidence.to_dict() if self.evidence is not None else None,
            "verdict": self.verdict.to_dict(),
        }
