"""After the edge correlation, the search refines its best poses a second time (``_refine_best_again``).

Why: one pattern search can stop short of its pose's peak (its steps halved to the finest, or its
evaluations spent), and then a look-alike that converged scores above the right pose (cube1008 in the
case family). These tests use a stand-in score whose peak lies further than one pattern search walks.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from MultimodalKneeRegistrationLib.geometry import rigid_from_matrix, transform_to_matrix
from MultimodalKneeRegistrationLib.progress import Progress
from MultimodalKneeRegistrationLib.search.initialization import REFINED_TWICE, _pattern_refine, _refine_best_again
from MultimodalKneeRegistrationLib.search.local_search import MAX_EVALUATIONS, SHIFT_STEPS

SPACING = 1.0
#: Further (mm) than one pattern search's evaluations can walk at its coarsest shift step.
PEAK = np.array([SHIFT_STEPS[0] * SPACING * MAX_EVALUATIONS / 12 * 1.6, 0.0, 0.0])


class _DistanceScorer:
    """Higher the nearer the pose sends the origin to ``PEAK``."""

    def score_matrix(self, matrix: np.ndarray) -> float:
        return -float(np.linalg.norm(matrix[:3, 3] - PEAK))

    def score(self, transform) -> float:
        return self.score_matrix(transform_to_matrix(transform))


def _space_and_plan():
    space = SimpleNamespace(scorer=_DistanceScorer(), center=np.zeros(3))
    plan = SimpleNamespace(search_spacing_mm=SPACING, execution=SimpleNamespace(number_of_threads=2))
    return space, plan


def _pose(shift_x: float):
    matrix = np.eye(4)
    matrix[0, 3] = shift_x
    return rigid_from_matrix(matrix, np.zeros(3))


def test_the_best_poses_climb_further_and_the_rest_are_left_as_they_were():
    space, plan = _space_and_plan()
    poses = [_pose(x) for x in np.linspace(-40.0, 0.0, REFINED_TWICE + 3)]
    once = [_pattern_refine(space, p, plan) for p in poses]  # one pattern search each stops short of the peak
    twice = _refine_best_again(space, once, plan, Progress())
    best = sorted(range(len(once)), key=lambda k: -once[k][0])[:REFINED_TWICE]
    for k, ((before, pose), (after, again)) in enumerate(zip(once, twice)):
        if k in best:
            assert after > before + SHIFT_STEPS[0] * SPACING, (k, before, after)
            assert after == space.scorer.score(again)
        else:
            assert (after, again) == (before, pose)
