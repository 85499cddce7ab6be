"""The Slicer side with the REAL CLI modules, run through Slicer's own vtkSlicerCLIModuleLogic.

``../shared/tools/slicer-cli`` holds BRAINSFit and ResampleScalarVectorDWIVolume built from source
and ``slicer_core_cli``, which hands their ``--xml`` descriptions to Slicer's CLI logic from the
slicer-core wheel: parameters on a vtkMRMLCommandLineModuleNode, MRML nodes written to temporary
files, the executable run, its outputs read back, status and ErrorsMask set, as in the application.
Only ``slicer.cli.run`` (application Python, absent from the wheel) is re-created, in conftest's
``cliRunFunction``, with Slicer's own parameter rules. Tests skip, naming the path, without them.
"""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import CancelledError, EngineError  # noqa: E402
from MultimodalKneeRegistrationLib.geometry import point_distances  # noqa: E402
from MultimodalKneeRegistrationLib.settings import settings_for_preset  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.cli_runner import runCliModule  # noqa: E402
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage  # noqa: E402
from testing_support import cliRunFunction  # noqa: E402

CENTER = (0.0, 5.0, 10.0)


@pytest.fixture(scope="module")
def pair():
    return make_registration_pair(
        "ct-mri", (10.0, 8.0),
        fixed_grid=GridSpec((80, 80, 70), (2.0, 2.0, 2.0), center=CENTER),
        moving_grid=GridSpec((90, 90, 20), (1.3, 1.3, 4.0), center=CENTER),
    )


def _logic(cliScene):
    return KneeRegistrationLogic(cliScene.scene, cliScene.cropLogic, brainsFitModule=cliScene.brainsfitLogic,
                                 cliRunFunction=cliScene.runBrainsFit, processEvents=None)


def _nodeIds(scene):
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


@pytest.mark.mrml
def test_logic_runs_real_brainsfit_through_slicers_cli_logic(cliScene, pair):
    scene = cliScene.scene
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, pair.moving, "MR")
    logic = _logic(cliScene)
    assert logic.availableEngines() == ["SimpleITK", "BRAINSFit"]
    before = _nodeIds(scene)
    out = logic.register(fixed, moving, settings_for_preset("fast-preview"), engine="BRAINSFit")
    result = out.result
    errors = point_distances(result.transform, pair.true_transform, pair.target_points())
    assert errors.mean() <= 0.5, f"{errors.mean():.2f} mm mean"
    assert result.engine == "BRAINSFit" and result.passed_sanity_checks
    assert "Stop condition" in result.stages[-1].stop_condition  # read from BRAINSFit's own output
    assert result.metric_after < result.metric_before
    assert _nodeIds(scene) - before == {out.outputTransformNode.GetID()}  # every temporary node removed
    assert moving.GetParentTransformNode() is out.outputTransformNode
    assert out.report["result"]["engine"] == "BRAINSFit" and out.report["status"] == "ok"


@pytest.mark.mrml
def test_failing_cli_run_raises_with_its_error_text_and_cleans_up(cliScene, pair):
    """An unreadable input: BRAINSFit exits with an error; ErrorsMask turns it into a clear error."""
    scene = cliScene.scene
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")  # nothing to write to a file
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "result")
    before = _nodeIds(scene)
    parameters = {"fixedVolume": fixed.GetID(), "movingVolume": empty.GetID(), "linearTransform": transform.GetID(),
                  "useRigid": True}
    with pytest.raises(EngineError, match=r"BRAINSFit failed \(Completed with errors\)") as raised:
        runCliModule(cliScene.brainsfitLogic, parameters, scene=scene, title="BRAINSFit",
                     runFunction=cliScene.runBrainsFit, processEvents=None)
    assert "application's error log" in raised.value.do
    assert _nodeIds(scene) == before  # the CLI node is gone too


@pytest.mark.mrml
def test_running_cli_is_polled_and_cancelled_for_real(cliScene, pair):
    """Apply in the background (as in the application), polled while the application logic works
    through its queues (what the application's timer does between Qt events), then cancelled."""
    scene = cliScene.scene
    fixed = addVolumeNodeFromSitkImage(scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(scene, pair.moving, "MR")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "result")
    polls = []
    parameters = {"fixedVolume": fixed.GetID(), "movingVolume": moving.GetID(), "linearTransform": transform.GetID(),
                  "useRigid": True, "useAffine": True, "samplingPercentage": 1.0, "numberOfIterations": 20000,
                  "initializeTransformMode": "useMomentsAlign"}
    with pytest.raises(CancelledError, match="BRAINSFit was cancelled"):
        runCliModule(cliScene.brainsfitLogic, parameters, scene=scene, title="BRAINSFit",
                     runFunction=cliRunFunction(cliScene.brainsfitLogic),
                     processEvents=lambda: (cliScene.app.ProcessModified(), cliScene.app.ProcessReadData()),
                     progress=lambda fraction, message: polls.append(fraction),
                     shouldCancel=lambda: len(polls) >= 5, pollSeconds=0.05)
    assert len(polls) >= 5
    assert not scene.GetNodesByClass("vtkMRMLCommandLineModuleNode").GetNumberOfItems()
