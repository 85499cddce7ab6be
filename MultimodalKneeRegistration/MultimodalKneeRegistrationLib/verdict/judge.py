"""``judge``: the one verdict on a result, whatever the engine.

Why: the sanity checks, the evidence and its grading used to be merged by hand in the pipeline.
Here they are asked in one call, which returns one ``Verdict``: every check (name, value, limit,
passed, sentence), the confidence, the competing pose and the evidence's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..geometry import transform_to_matrix
from ..search.initialization import PoseSpace, SearchOutcome
from .checks import check_result
from .evidence import gather_evidence
from .looks import weigh_evidence
from .record import Competitor, Verdict


@dataclass(frozen=True)
class Case:
    """What is judged: the result and its start (fixed -> moving) with the metric at each, and the same
    result seen by the search (``found``, ``start_found``: sampled -> other) on the working images."""

    transform: sitk.Transform
    start: sitk.Transform
    metric_before: Optional[float]
    metric_after: Optional[float]
    found: sitk.Transform
    start_found: sitk.Transform
    #: The working images: the small field of view, the other as the engine saw it (cropped) and whole.
    sampled: sitk.Image
    cropped_other: sitk.Image
    other: sitk.Image
    #: True when ``sampled`` is the moving image (the competitor is then inverted to fixed -> moving).
    swapped: bool
    #: Where ``sampled`` holds anatomy (a micro-CT's reconstruction cylinder); None: everywhere.
    mask: Optional[sitk.Image] = None


def judge(case: Case, search: Optional[SearchOutcome], plan, checks, initialization: str) -> Verdict:
    """The verdict on ``case``: the sanity checks, then the looks beyond the metric.

    ``search`` is the search's outcome (its competitors and scorer; None without a search), ``checks``
    the limits (``settings.checks``), ``initialization`` the mode the result was initialised by.

    Example:
        >>> verdict = judge(case, search, plan, settings.checks, "search")  # doctest: +SKIP
        >>> verdict.passed, [c.name for c in verdict.checks if not c.passed]  # doctest: +SKIP
        (False, ['margin_over_competitor'])
    """
    space = search.space if search is not None else PoseSpace(case.sampled, case.other, case.start_found,
                                                              plan.search_spacing_mm, case.mask)
    return judge_in(case, space, search.candidates if search is not None else [], plan, checks, initialization)


def judge_in(case: Case, space, candidates, plan, checks, initialization: str) -> Verdict:
    """``judge`` given the scorer's ``space`` (a ``PoseSpace``, or one bone's) and the ``candidates``
    (score, pose) that compete with the result, best first: what per-bone registration asks."""
    evidence = gather_evidence(space, candidates, transform_to_matrix(case.found), plan.search_spacing_mm)
    if evidence.competitor_matrix is not None and case.swapped:  # reported fixed -> moving, as the result
        evidence.competitor_matrix = np.linalg.inv(evidence.competitor_matrix)
    sanity = check_result(case.transform, case.start, case.metric_before, case.metric_after, case.sampled,
                          case.cropped_other, case.found, plan, checks, initialization, case.mask)
    confidence, looks = weigh_evidence(evidence, checks, plan.search_spacing_mm)
    return Verdict(tuple(sanity + looks), confidence, Competitor.of(evidence), evidence)
