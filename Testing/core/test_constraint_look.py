"""The verdict's constraint look measures the score's curvature, not the pose's offset from the peak.

Why: a right answer that sits a fraction of a step beside the scorer's peak drops little on one
side and much on the other; the smaller side alone refused a right porcine pair (pair1042: 0.9 %
against the 1.2 % floor, 2.4 % on average over both sides).
"""

import numpy as np
import pytest
from MultimodalKneeRegistrationLib.verdict.evidence import _weakest_drop

SHIFT_MM, TURN_RAD = 2.0, np.radians(3.0)
PEAK = np.array([10.0, -5.0, 3.0])


def quadratic_score(matrix: np.ndarray) -> float:
    """1 at the peak (no turn, shifted to PEAK), falling quadratically; shifts weigh less than turns."""
    turn = float(np.sum((matrix[:3, :3] - np.eye(3)) ** 2))
    shift = float(np.sum((matrix[:3, 3] - PEAK) ** 2))
    return 1.0 - 0.001 * shift - 2.0 * turn


def pose(offset_mm: float) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = PEAK + np.array([offset_mm, 0.0, 0.0])
    return matrix


def constraint(matrix: np.ndarray) -> float:
    return _weakest_drop(quadratic_score, matrix, np.zeros(3), quadratic_score(matrix), SHIFT_MM, TURN_RAD)


def test_the_curvature_at_the_peak():
    # Moving 2 mm along an axis drops the score by 0.001 * 4 = 0.4 %, the weakest direction.
    assert constraint(pose(0.0)) == pytest.approx(0.004, rel=1e-6)


@pytest.mark.parametrize("offset_mm", [-0.8, -0.3, 0.3, 0.8])
def test_a_pose_beside_the_peak_reads_the_same_constraint(offset_mm):
    one_sided = min(quadratic_score(pose(offset_mm)) - quadratic_score(pose(offset_mm + sign * SHIFT_MM))
                    for sign in (-1.0, 1.0))
    assert one_sided < 0.003  # the smaller side alone would read the offset, not the curvature
    assert constraint(pose(offset_mm)) == pytest.approx(0.004, rel=0.01)
