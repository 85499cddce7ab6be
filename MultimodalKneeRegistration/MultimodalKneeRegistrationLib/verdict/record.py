"""The verdict as one record: every check, the confidence, the competing pose and the evidence.

Why: the decision used to be assembled by hand from three modules and handed back in six places
(``sanity``, ``passed_sanity_checks``, ``overlap_after``, ``confidence``, ``evidence`` and warning
strings). ``Verdict`` holds it once; the report's old keys are read from it (``sanity``,
``to_dict``), so the report keeps its layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Check:
    """One check: its value, its limit (as text), whether it passed, and what that means in a sentence
    (for a failed check, the sentence the user reads in the warning and the refusal)."""

    name: str
    value: Any
    limit: str
    passed: bool
    sentence: str

    def entry(self) -> Dict[str, Any]:
        """The report's form (``sanity`` / ``verdict.checks``): value, limit, passed."""
        return {"value": self.value, "limit": self.limit, "passed": self.passed}


@dataclass(frozen=True, eq=False)
class Competitor:
    """The best different answer the search found (``search.poses``), fixed -> moving."""

    matrix: np.ndarray
    score: float
    distance_mm: float
    rotation_deg: float
    edge_ncc: Optional[float]
    #: (result's score - competitor's score) / |result's score|.
    margin: float

    @classmethod
    def of(cls, evidence) -> Optional[Competitor]:
        """The competitor ``evidence`` names (its matrix already fixed -> moving), or None."""
        if evidence is None or evidence.competitor_matrix is None:
            return None
        return cls(evidence.competitor_matrix, evidence.competitor_score, evidence.competitor_distance_mm,
                   evidence.competitor_rotation_deg, evidence.competitor_edge_ncc, evidence.margin)

    def to_dict(self) -> Dict[str, Any]:
        return {"matrix_lps_fixed_to_moving": np.round(self.matrix, 6).tolist(), "score": round(self.score, 4),
                "distance_mm": round(self.distance_mm, 4), "rotation_deg": round(self.rotation_deg, 4),
                "edge_ncc": None if self.edge_ncc is None else round(self.edge_ncc, 4),
                "margin": round(self.margin, 4)}


@dataclass(frozen=True)
class Verdict:
    """Whether a result can be trusted (``passed``), how much (``confidence``), and why.

    Example:
        >>> verdict = result.verdict  # doctest: +SKIP
        >>> verdict.passed, verdict.confidence, verdict.failures  # doctest: +SKIP
        (False, 0.0, ['another pose, 87 mm and 120 deg away, explains the images almost as well ...'])
    """

    checks: Tuple[Check, ...]
    confidence: Optional[float] = None
    competitor: Optional[Competitor] = None
    #: The numbers the looks weigh (``verdict.evidence.Evidence``), or None (no evidence was gathered).
    evidence: Any = field(default=None, compare=False)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> List[str]:
        """The failed checks' sentences, in check order."""
        return [check.sentence for check in self.checks if not check.passed]

    def check(self, name: str) -> Optional[Check]:
        return next((check for check in self.checks if check.name == name), None)

    @property
    def sanity(self) -> Dict[str, Dict[str, Any]]:
        """Every check as ``{name: {value, limit, passed}}`` (the report's ``sanity`` and ``verdict.checks``)."""
        return {check.name: check.entry() for check in self.checks}

    @property
    def overlap_after(self) -> Optional[float]:
        check = self.check("overlap_after")
        return None if check is None else check.value

    def to_dict(self) -> Dict[str, Any]:
        return {
            "passed": self.passed,
            "confidence": self.confidence,
            "failures": self.failures,
            "checks": [{"name": c.name, **c.entry(), "sentence": c.sentence} for c in self.checks],
            "competitor": None if self.competitor is None else self.competitor.to_dict(),
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
        }
