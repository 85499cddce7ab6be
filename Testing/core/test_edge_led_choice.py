"""The engine refines a pose the edges vouch for when the search's best pose is a look-alike
(``verdict.choice``), and the verdict accepts such a result over a look-alike that scores slightly more.

A real ``PoseSpace`` on a textured volume and a cube cut from it: at the identity (the answer) the
edges agree, 25 mm away they do not. The search's candidate list is written by hand so that the
look-alike's score, relative to the answer's real one, is known.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import rigid_from_matrix, transform_to_matrix
from MultimodalKneeRegistrationLib.search.initialization import PoseSpace, SearchOutcome
from MultimodalKneeRegistrationLib.settings import CheckSettings
from MultimodalKneeRegistrationLib.verdict.choice import edge_led_choice
from MultimodalKneeRegistrationLib.verdict.evidence import EdgeAgreement

SPACING_MM = 1.0
CHECKS = CheckSettings()
#: Where the look-alike puts the cube: 25 mm from the answer, still inside the volume.
LOOK_ALIKE_SHIFT = (25.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def space() -> PoseSpace:
    rng = np.random.default_rng(7)
    texture = sitk.GetImageFromArray(rng.normal(size=(72, 72, 72)).astype(np.float32))
    volume = sitk.SmoothingRecursiveGaussian(texture, 2.5)
    volume.SetOrigin((-36.0, -36.0, -36.0))
    cube = sitk.RegionOfInterest(volume, (24, 24, 24), (24, 24, 24))
    return PoseSpace(cube, volume, sitk.Transform(3, sitk.sitkIdentity), SPACING_MM)


def _outcome(space: PoseSpace, look_alike_lead: float) -> SearchOutcome:
    """The look-alike first, scoring ``look_alike_lead`` (relative) above the answer's real score."""
    answer = rigid_from_matrix(np.eye(4), space.center)
    shifted = np.eye(4)
    shifted[:3, 3] = LOOK_ALIKE_SHIFT
    look_alike = rigid_from_matrix(shifted, space.center)
    answer_score = space.scorer.score(answer)
    candidates = [(answer_score * (1 + look_alike_lead), look_alike), (answer_score, answer)]
    return SearchOutcome(look_alike, candidates[0][0], 0.0, 2, 2, 0.0, "searched", candidates, space)


def test_the_answer_and_the_look_alike_are_what_the_test_says(space):
    edges = EdgeAgreement(space.small, space.large, SPACING_MM)
    outcome = _outcome(space, 0.03)
    look_alike, answer = (transform_to_matrix(pose) for _, pose in outcome.candidates)
    assert edges.ncc(answer) > CHECKS.min_edge_agreement + CHECKS.look_alike_edge_gap
    assert edges.ncc(look_alike) < CHECKS.min_edge_agreement


def test_a_look_alike_scoring_within_the_margin_gives_way_to_the_pose_the_edges_vouch_for(space):
    outcome = _outcome(space, 0.03)
    chosen = edge_led_choice(outcome, CHECKS, SPACING_MM)
    matrix = transform_to_matrix(chosen.transform)
    assert np.linalg.norm(matrix[:3, 3]) < 1.5 and np.allclose(matrix[:3, :3], np.eye(3), atol=0.03)
    assert "is refined instead" in chosen.description and chosen.description.startswith("searched")
    # The look-alike stays a candidate, first by score: the verdict still weighs it as the competitor.
    assert chosen.candidates[0] == outcome.candidates[0] and len(chosen.candidates) == 3
    assert [score for score, _ in chosen.candidates] == sorted((s for s, _ in chosen.candidates), reverse=True)


def test_a_look_alike_scoring_beyond_the_margin_is_kept(space):
    outcome = _outcome(space, 0.25)
    assert edge_led_choice(outcome, CHECKS, SPACING_MM) is outcome


def test_a_best_pose_whose_edges_pass_the_floor_is_kept(space):
    outcome = _outcome(space, 0.03)
    lenient = replace(CHECKS, min_edge_agreement=-1.0)
    assert edge_led_choice(outcome, lenient, SPACING_MM) is outcome


def test_no_rival_is_chosen_unless_its_edges_lead_by_the_gap(space):
    outcome = _outcome(space, 0.03)
    strict = replace(CHECKS, look_alike_edge_gap=1.5)
    assert edge_led_choice(outcome, strict, SPACING_MM) is outcome
