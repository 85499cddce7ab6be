"""One path from inputs to outputs: one report schema, one metric, checks that can fail, one output set."""

from __future__ import annotations

import errno
import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.errors import OutputError
from MultimodalKneeRegistrationLib.outputs.report import REPORT_KEYS
from MultimodalKneeRegistrationLib.outputs.writers import write_outputs
from MultimodalKneeRegistrationLib.run import run
from MultimodalKneeRegistrationLib.settings import settings_for_preset
from MultimodalKneeRegistrationLib.synthetic.pairs import make_registration_pair


@pytest.fixture(scope="module")
def outcome():
    pair = make_registration_pair("ct-mri", (12.0, 9.0))
    return run(pair.fixed, pair.moving, settings_for_preset("fast-preview"), inputs={"fixed": "f", "moving": "m"})


def test_every_metric_value_comes_from_the_one_evaluation(outcome):
    result = outcome.result
    search, rigid = result.stages
    assert search.name == "Initialize (search)" and rigid.name == "Rigid"
    assert rigid.metric_value == result.metric_after  # "after" is where the last stage ended
    assert result.metric_before > search.metric_value >= rigid.metric_value  # each step improved it
    assert outcome.report["result"]["metric"]["after"] == round(result.metric_after, 6)


def test_the_reports_old_keys_are_read_from_the_one_verdict(outcome):
    """report.json (format 2) keeps its keys; each is the verdict's, and the verdict is there whole too."""
    result, report = outcome.result, outcome.report
    verdict = result.verdict
    assert all(c.name and c.limit and isinstance(c.passed, bool) and c.sentence for c in verdict.checks)
    assert report["verdict"]["checks"] == verdict.sanity == result.sanity
    assert report["verdict"]["passed"] is verdict.passed is result.passed_sanity_checks
    assert report["verdict"]["confidence"] == verdict.confidence == result.confidence
    assert report["result"]["overlap_after"] == verdict.overlap_after == verdict.check("overlap_after").value
    assert report["result"]["evidence"] == verdict.evidence.to_dict() == result.evidence.to_dict()
    data = result.to_dict()
    assert data["sanity"] == verdict.sanity and data["passed_sanity_checks"] is verdict.passed
    assert data["verdict"] == verdict.to_dict() and "verdict" not in report["result"]
    assert report["plan"]["roi"] == result.facts.roi.to_dict()
    assert report["plan"]["explanation"] == list(result.explanation)
    assert result.facts.notes[-1] in report["plan"]["explanation"] and "cropped" in result.facts.notes[-1]
    assert not any("cropped to" in sentence for sentence in result.plan.explanation)  # the plan is not rewritten


def test_a_start_kept_after_a_refused_search_is_a_fact_of_the_result_not_a_new_plan(monkeypatch):
    """The search's pose is refused (forced here); the user's start refined locally passes and is kept."""
    from MultimodalKneeRegistrationLib import pipeline
    from MultimodalKneeRegistrationLib.verdict.record import Check

    real_judge = pipeline.judge

    def refuse_the_search(case, search, plan, checks, initialization):
        verdict = real_judge(case, search, plan, checks, initialization)
        if initialization != "search":
            return verdict
        return replace(verdict, checks=verdict.checks + (Check("forced", 0.0, ">= 1", False, "forced refusal"),))

    monkeypatch.setattr(pipeline, "judge", refuse_the_search)
    pair = make_registration_pair("ct-mri", (12.0, 9.0))
    kept = run(pair.fixed, pair.moving, settings_for_preset("fast-preview"), initial_transform=pair.true_transform,
               qc_mode=None, resample=False)
    result, report = kept.result, kept.report
    assert result.passed_sanity_checks and "forced" not in result.sanity
    assert result.warnings[0].startswith("the search's best pose failed") and "forced refusal" in result.warnings[0]
    assert result.plan.initialize_transform_mode == "search" and result.facts.initialization == "Off"
    assert report["plan"]["initialize_transform_mode"] == "Off"  # where the report has always said so
    assert "refined instead" in result.facts.notes[0] and result.facts.notes[0] in report["plan"]["explanation"]
    assert "rotation_from_start_deg" in result.sanity  # judged as a local refinement
    assert "rejected_search" in result.timings


def test_a_check_that_cannot_fail_is_left_out(outcome):
    """The search covers every half turn, so a rotation limit would read "<= 180 deg": not a check."""
    assert "rotation_from_start_deg" not in outcome.result.sanity
    assert any("three half turns" in sentence for sentence in outcome.result.plan.explanation)
    pair = make_registration_pair("ct-mri", (8.0, 6.0))
    local = run(pair.fixed, pair.moving, settings_for_preset("fast-preview", initialize_transform_mode="Off"),
                initial_transform=pair.true_transform, qc_mode=None, resample=False)
    check = local.result.sanity["rotation_from_start_deg"]
    assert check["limit"] == "<= 45" and check["passed"] and check["value"] < 5


def test_a_failed_write_leaves_nothing_and_says_so(outcome, tmp_path):
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left on device.*nothing was written"):
        write_outputs(outcome, target, extra={"inputs/big.nrrd": full_disk})
    assert not target.exists() and list(tmp_path.iterdir()) == []
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("the user's own file")
    with pytest.raises(OutputError):
        write_outputs(outcome, existing, extra={"inputs/big.nrrd": full_disk})
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]  # no partial set, nothing hidden left
    files = write_outputs(outcome, existing)
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt", "qc.png", "registered_moving.nrrd",
                                                          "report.json", "transform.tfm"]
    report = json.loads(files["report"].read_text())
    assert report["outputs"]["transform"] == str((existing / "transform.tfm").resolve())


@pytest.mark.slow
def test_the_demo_report_is_the_register_report_plus_the_truth(outcome, tmp_path):
    from MultimodalKneeRegistrationLib.synthetic.demo import run_demo

    demo = run_demo(tmp_path / "demo")
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert set(report) == set(REPORT_KEYS) | {"truth", "transform_convention"}
    assert set(outcome.report) == set(REPORT_KEYS) | {"transform_convention"}
    assert report["kind"] == "demo" and outcome.report["kind"] == "register"
    assert set(report["outputs"]) >= {"transform", "registered_moving", "qc", "report"}
    assert report["truth"]["error_mean_mm"] == pytest.approx(demo.error_mean_mm) and demo.passed
    assert (tmp_path / "demo" / "inputs" / "true_transform.tfm").is_file()
    truth = np.array(report["truth"]["true_matrix_lps_fixed_to_moving"])
    assert np.allclose(truth[3], [0, 0, 0, 1])
    assert sitk.ReadTransform(str(tmp_path / "demo" / "transform.tfm")).GetDimension() == 3
