"""Coarse-to-fine pose search over every orientation: where, and how turned, a small image sits in a large one.

Why: a micro-CT comes in any orientation, and its edge correlation peaks only within ~10 deg of
the true rotation, while the rotations tried over the whole rotation group are 34 deg apart at
worst. On the case family, 6 of 7 refused well-posed cubes had no candidate within ~10 mm of the
answer although the answer scored best. So the search goes in levels:

1. every rotation of the search set, each correlated over every shift (FFT, both cores);
2. the best distinct poses, ranked both by edge correlation and by the search's mutual
   information (neither alone: on six failing cubes the pose nearest the answer ranked 143rd of
   449 by correlation but 1st by MI in one, 9th by correlation but 220th by MI in another), each
   turned by a local grid of 33 rotations (``rotations.local_grid``) and correlated over a window
   of nearby shifts; each level's grid reaches as far as the last level's covering radius and
   covers its own reach more finely (by default 17, 8 and 4 deg apart: covering radii 16, 7.5
   and 3.8 deg, measured);
3. optionally (``polish``; ``search_polish_evaluations``, off by default, see settings), after the
   first refinement level every pose is *polished* (a short pattern search on the search's mutual
   information) and the next level keeps the best polished poses: at the search's
   spacing the MI peak is only ~1-2 mm wide, so unpolished a pose 6 deg / 6 mm from the answer
   scored below look-alikes (cube1016 with the cube fixed: 0.68 against 0.73-0.76, dropped there)
   and polished above them (0.76); ranked unpolished, the answer was lost on 2 of 3 traced cubes.
   The best half of the polished poses also go to the refinement as they are: the later levels rank
   unpolished poses again, and lost the answer there on cube1039;
4. the best distinct poses of the last level, by both rankings, go to the mutual-information
   refinement in ``initialization``.

What each level scored and its covering radius are returned as ``LevelRecord`` for the plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..execution import parallel_map
from ..progress import Progress
from .edge_correlation import CorrelationCandidate, EdgeCorrelator, distinct_best
from .poses import DistinctPeaks
from .rotations import local_covering_deg, local_grid

#: How far (mm) around a kept pose a refinement level looks for the best shift.
REACH_MM = 8.0


@dataclass(frozen=True)
class LevelRecord:
    """What one level of the search did: rotations scored, covering radius (deg), spacing (mm)."""

    name: str
    rotations_scored: int
    covering_deg: float
    spacing_mm: float
    poses_in: int
    #: How many of the level's poses were polished on the search's MI before the next level chose.
    polished: int = 0

    def sentence(self) -> str:
        polished = f"; its {self.polished} poses polished on MI" if self.polished else ""
        return (f"{self.name}: {self.rotations_scored} rotations correlated at {self.spacing_mm:.1f} mm "
                f"(every orientation in reach within {self.covering_deg:.1f} deg of one){polished}")


@dataclass
class LevelOutcome:
    """The final candidates (best first by NCC, then by MI) and each level's record."""

    candidates: List[CorrelationCandidate]
    levels: List[LevelRecord]


def search_levels(
    small: sitk.Image,
    large: sitk.Image,
    rotations: Sequence[np.ndarray],
    spacing_mm: float,
    search,
    covering_deg: float,
    score: Optional[Callable[[np.ndarray], float]] = None,
    workers: int = 1,
    progress: Optional[Progress] = None,
    mask: Optional[sitk.Image] = None,
    polish: Optional[Callable[[np.ndarray], Tuple[np.ndarray, float]]] = None,
    whole_field_spacing_mm: Optional[float] = None,
) -> LevelOutcome:
    """Level 1 over ``rotations`` (whole field), then ``search.level_steps_deg`` refinement levels.

    ``score(matrix)`` (higher is better) ranks poses beside the edge correlation; ``workers``
    threads share the FFTs (numpy releases the GIL there). ``covering_deg`` is the covering radius of
    ``rotations``, for the record. ``mask`` (over ``small``) keeps the edge template inside it.
    ``polish(matrix)`` -> (polished matrix, score) polishes the first refinement level's poses.
    ``whole_field_spacing_mm`` (coarser than ``spacing_mm``) is level 1's spacing; the refinement
    levels correlate at ``spacing_mm``.
    """
    progress = progress or Progress()
    correlator = EdgeCorrelator(small, large, spacing_mm, mask)
    if not correlator.usable:
        return LevelOutcome([], [])
    first = _whole_field_correlator(small, large, spacing_mm, whole_field_spacing_mm, mask) or correlator
    distinct = DistinctPeaks(correlator.center)
    whole = first.whole()
    found = parallel_map(lambda r: first.best(r, whole), list(rotations), workers, progress.sub(0.0, 0.6),
                         "search: edge correlation over every orientation", batch=24,
                         during="during the edge correlation")
    found = _scored(found, score)
    levels = [LevelRecord("level 1 (every orientation)", len(rotations), covering_deg, first.spacing, 1)]
    steps, keeps = search.level_steps_deg, search.level_keep
    parts = progress.sub(0.6, 1.0).split(max(1, len(steps)))
    carried: List[CorrelationCandidate] = []  # the best polished poses go to the refinement as they are
    for number, (step, keep) in enumerate(zip(steps, keeps)):
        part = parts[number]
        if number == 1 and polish is not None:
            kept = distinct_best(_polished(found, polish, workers, part.sub(0.0, 0.5)), distinct, keep,
                                 key=lambda c: c.score)
            levels[-1] = dataclasses.replace(levels[-1], polished=len(found))
            carried = [dataclasses.replace(c) for c in kept[:(search.final_candidates + 1) // 2]]
            for candidate in kept:  # the next levels rank by the same (quick) score as the others
                candidate.score = float("nan")
            part = part.sub(0.5, 1.0)
        else:
            kept = shortlist(found, distinct, keep)
        found = _refine_level(correlator, kept, step, score, workers, part)
        levels.append(LevelRecord(f"level {number + 2} (around {len(kept)} poses)", len(kept) * len(local_grid(step)),
                                  local_covering_deg(step), spacing_mm, len(kept)))
    final = shortlist(found, distinct, search.final_candidates)
    return LevelOutcome(final + [c for c in carried if all(distinct.differ(c.matrix, f.matrix) for f in final)],
                        levels)


def _whole_field_correlator(small, large, spacing_mm: float, whole_field_spacing_mm: Optional[float],
                            mask) -> Optional[EdgeCorrelator]:
    """Level 1's own correlator at ``whole_field_spacing_mm``, when that is coarser and usable."""
    if whole_field_spacing_mm is None or whole_field_spacing_mm <= spacing_mm * 1.05:
        return None
    coarse = EdgeCorrelator(small, large, whole_field_spacing_mm, mask)
    return coarse if coarse.usable else None


def shortlist(found: Sequence[CorrelationCandidate], distinct: DistinctPeaks, count: int
              ) -> List[CorrelationCandidate]:
    """Up to ``count`` distinct poses: the best half by edge correlation, then the best by MI."""
    by_ncc = distinct_best(found, distinct, (count + 1) // 2)
    scored = [c for c in found if np.isfinite(c.score)]
    by_score = distinct_best(scored, distinct, count, key=lambda c: c.score)
    return distinct_best(by_ncc + by_score, distinct, count, key=_rank_key(by_ncc))


def _rank_key(first: List[CorrelationCandidate]) -> Callable[[CorrelationCandidate], float]:
    """Keeps ``first`` ahead of the rest (in their order), then the others by MI."""
    order = {id(c): len(first) - i for i, c in enumerate(first)}
    return lambda c: 1e6 + order[id(c)] if id(c) in order else (c.score if np.isfinite(c.score) else -1e6)


def _refine_level(correlator: EdgeCorrelator, kept, step_deg: float, score, workers: int, progress: Progress):
    """Each kept pose turned by ``local_grid(step_deg)``, shifts searched nearby: the best of each by NCC and by MI."""
    grid = local_grid(step_deg)

    def around(candidate: CorrelationCandidate) -> List[CorrelationCandidate]:
        window = correlator.window_around(candidate.matrix, max(REACH_MM, 2.0 * correlator.spacing))
        turned = [correlator.best(candidate.matrix[:3, :3] @ r, window) for r in grid]
        turned = _scored([c for c in turned if c is not None] + [candidate], score)
        best = [max(turned, key=lambda c: c.ncc)]
        if score is not None:
            best.append(max(turned, key=lambda c: c.score))
        return best

    refined = parallel_map(around, list(kept), workers, progress, f"search: refining rotations {step_deg:g} deg apart",
                           during="during the edge correlation's refinement")
    return [c for group in refined for c in group]


def _polished(found, polish, workers: int, progress: Progress) -> List[CorrelationCandidate]:
    """Each candidate polished by ``polish``: its polished pose, same NCC, the polished score."""
    def one(candidate: CorrelationCandidate) -> CorrelationCandidate:
        matrix, value = polish(candidate.matrix)
        return CorrelationCandidate(matrix, candidate.ncc, float(value))

    return parallel_map(one, list(found), workers, progress, "search: polishing the refined poses",
                        during="during the search's polish")


def _scored(found, score) -> List[CorrelationCandidate]:
    """The candidates that exist, each with its ``score`` (when a scorer is given and not yet scored)."""
    found = [c for c in found if c is not None]
    if score is not None:
        for candidate in found:
            if not np.isfinite(candidate.score):
                candidate.score = float(score(candidate.matrix))
    return found
