"""The verdict (issue 15): each look refuses on its own, the confidence is the weakest grade, and a
refusal names what competes with the result. Evidence is built by hand, so every figure is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from MultimodalKneeRegistrationLib.settings import CheckSettings
from MultimodalKneeRegistrationLib.verdict.evidence import Evidence
from MultimodalKneeRegistrationLib.verdict.looks import grade, weigh_evidence
from MultimodalKneeRegistrationLib.verdict.record import Competitor, Verdict

CHECKS = CheckSettings()
SPACING_MM = 1.5

#: Evidence every look is sure of: the confidence is 1.
SURE = Evidence(score=0.40, polish_shift_mm=0.0, competitor_score=0.20, competitor_distance_mm=40.0,
                competitor_rotation_deg=170.0, margin=0.50, edge_ncc=0.95, competitor_edge_ncc=0.50,
                weakest_drop=0.10)


def judge(evidence, checks, spacing_mm):
    """(confidence, {look: {value, limit, passed}}, failure sentences), read from one ``Verdict``."""
    confidence, looks = weigh_evidence(evidence, checks, spacing_mm)
    verdict = Verdict(tuple(looks), confidence, Competitor.of(evidence), evidence)
    return confidence, verdict.sanity, verdict.failures


def test_grade_is_zero_at_the_limit_one_when_sure_and_linear_between():
    assert grade(0.1, 0.1, 0.3) == 0.0 and grade(0.05, 0.1, 0.3) == 0.0
    assert grade(0.3, 0.1, 0.3) == 1.0 and grade(0.9, 0.1, 0.3) == 1.0
    assert grade(0.2, 0.1, 0.3) == pytest.approx(0.5)
    assert grade(None, 0.1, 0.3) == 1.0


def test_sure_evidence_passes_every_look_with_full_confidence():
    confidence, entries, failures = judge(SURE, CHECKS, SPACING_MM)
    assert (confidence, failures) == (1.0, [])
    assert set(entries) == {"margin_over_competitor", "edge_agreement", "edge_lead_over_competitor",
                            "constraint", "optimiser_converged"}
    assert all(entry["passed"] for entry in entries.values())


@pytest.mark.parametrize("change, look, words", [
    ({"margin": 0.05, "competitor_score": 0.38, "competitor_edge_ncc": 0.70}, "margin_over_competitor",
     "40 mm and 170 deg away"),
    ({"edge_ncc": 0.50}, "edge_agreement", "edges barely agree"),
    ({"competitor_edge_ncc": 0.97}, "edge_lead_over_competitor", "edges agree better with another pose"),
    ({"weakest_drop": 0.005}, "constraint", "do not pin the pose down"),
    ({"polish_shift_mm": 6.0}, "optimiser_converged", "moves the result by 6.0 mm"),
])
def test_each_look_refuses_on_its_own_and_says_why(change, look, words):
    confidence, entries, failures = judge(replace(SURE, **change), CHECKS, SPACING_MM)
    assert confidence == 0.0
    assert [name for name, entry in entries.items() if not entry["passed"]] == [look]
    assert len(failures) == 1 and words in failures[0]


def test_confidence_is_the_weakest_grade():
    halfway_margin = (CHECKS.min_margin + CHECKS.sure_margin) / 2
    edge = CHECKS.min_edge_agreement + 0.8 * (CHECKS.sure_edge_agreement - CHECKS.min_edge_agreement)
    confidence, _, failures = judge(replace(SURE, margin=halfway_margin, edge_ncc=edge), CHECKS, SPACING_MM)
    assert failures == [] and confidence == pytest.approx(0.5, abs=1e-3)


def test_polish_shift_is_counted_in_search_voxels():
    shift = replace(SURE, polish_shift_mm=3.0)  # 2 voxels at 1.5 mm, 6 at 0.5 mm
    assert judge(shift, CHECKS, 1.5)[2] == []
    _, entries, failures = judge(shift, CHECKS, 0.5)
    assert (entries["optimiser_converged"]["value"], entries["optimiser_converged"]["passed"]) == (6.0, False)
    assert len(failures) == 1


def test_without_a_search_the_competitor_looks_are_not_held_against_the_result():
    alone = replace(SURE, competitor_score=None, competitor_distance_mm=None, competitor_rotation_deg=None,
                    margin=None, competitor_edge_ncc=None)
    confidence, entries, failures = judge(alone, CHECKS, SPACING_MM)
    assert failures == [] and confidence == 1.0
    assert entries["margin_over_competitor"]["value"] is None and entries["margin_over_competitor"]["passed"]


def test_a_small_margin_over_a_look_alike_whose_edges_do_not_agree_does_not_refuse():
    """cube1006: a right answer 3 % above a pose 113 mm away whose edges did not agree (0.02 vs 0.80)."""
    look_alike = replace(SURE, margin=0.034, competitor_score=0.467, score=0.484, edge_ncc=0.80,
                         competitor_edge_ncc=0.02)
    confidence, entries, failures = judge(look_alike, CHECKS, SPACING_MM)
    assert failures == [] and entries["margin_over_competitor"]["passed"]
    assert "look-alike" in entries["margin_over_competitor"]["limit"] and confidence > 0.5


def test_a_look_alike_scoring_slightly_more_whose_edges_do_not_agree_does_not_refuse():
    """cube1026: the answer (edges 0.78) 3 % below a pose 104 mm away whose edges agreed at 0.46."""
    above = replace(SURE, margin=-0.033, competitor_score=0.560, score=0.542, edge_ncc=0.78,
                    competitor_edge_ncc=0.46)
    confidence, entries, failures = judge(above, CHECKS, SPACING_MM)
    assert failures == [] and entries["margin_over_competitor"]["passed"]
    assert entries["margin_over_competitor"]["value"] == -0.033 and confidence > 0.2


@pytest.mark.parametrize("change", [
    {"competitor_edge_ncc": 0.62},  # the competitor's edges pass the floor: a rival answer
    {"competitor_edge_ncc": 0.50, "edge_ncc": 0.70},  # only 0.20 apart: too close to call
    {"margin": -0.12, "competitor_edge_ncc": 0.02},  # the competitor scores better by more than the margin
])
def test_a_small_margin_still_refuses_when_the_competitor_is_a_rival(change):
    base = {"margin": 0.034, "competitor_score": 0.467, "score": 0.484, "edge_ncc": 0.80}
    rival = replace(SURE, **{**base, **change})
    _, entries, failures = judge(rival, CHECKS, SPACING_MM)
    assert not entries["margin_over_competitor"]["passed"] and "ambiguous" in failures[0]


def test_every_check_of_the_verdict_says_its_name_value_limit_outcome_and_a_sentence():
    confidence, looks = weigh_evidence(replace(SURE, edge_ncc=0.50), CHECKS, SPACING_MM)
    verdict = Verdict(tuple(looks), confidence)
    for check in verdict.checks:
        assert check.name and check.limit and isinstance(check.passed, bool) and check.sentence
        assert isinstance(check.value, float)
    assert [c.name for c in verdict.checks if not c.passed] == ["edge_agreement"] and not verdict.passed
    assert verdict.failures == [verdict.check("edge_agreement").sentence]
    data = verdict.to_dict()
    assert data["passed"] is False and data["failures"] == verdict.failures
    assert [c["name"] for c in data["checks"]] == [c.name for c in verdict.checks]


def test_a_refused_verdict_names_the_competitor():
    matrix = np.eye(4)
    matrix[:3, 3] = (40.0, 0.0, 0.0)
    ambiguous = replace(SURE, margin=0.05, competitor_score=0.38, competitor_edge_ncc=0.70, competitor_matrix=matrix)
    confidence, looks = weigh_evidence(ambiguous, CHECKS, SPACING_MM)
    verdict = Verdict(tuple(looks), confidence, Competitor.of(ambiguous), ambiguous)
    assert not verdict.passed and confidence == 0.0
    assert verdict.competitor.distance_mm == 40.0 and verdict.competitor.rotation_deg == 170.0
    assert verdict.competitor.score == 0.38 and np.array_equal(verdict.competitor.matrix, matrix)
    assert "40 mm and 170 deg away" in verdict.failures[0]
    assert verdict.to_dict()["competitor"]["matrix_lps_fixed_to_moving"][0][3] == 40.0
    assert Competitor.of(replace(SURE, competitor_matrix=None)) is None
