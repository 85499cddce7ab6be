"""The one CLI helper: status checks, readable errors, cancellation, clean-up.

No CLI binary (BRAINSFit) can run outside the Slicer application, so ``slicer.cli.run`` is replaced
by a fake that returns a *real* vtkMRMLCommandLineModuleNode in the state a real run would leave it.
What is tested is our handling of that node, which is the part ``slicer.cli.runSync`` gets wrong.
"""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.errors import CancelledError, RegistrationFailedError  # noqa: E402
from MultimodalKneeRegistrationSlicer.cli_runner import errorSummary, runCliModule  # noqa: E402

ITK_ERROR = """Exception thrown in BRAINSFit:
/work/ITK/Modules/Registration/Metricsv4/include/itkImageToImageMetricv4.hxx:612:
ITK ERROR: MattesMutualInformationImageToImageMetricv4(0x55d1): All samples map outside moving image buffer.
The images do not sufficiently overlap. They need to overlap by at least 0.0% of the fixed image."""


class FakeCli:
    """``slicer.cli.run`` stand-in: a real CLI node, finished (or running) the way we tell it to."""

    def __init__(self, scene, status, errorText="", outputText="", runningPolls=0):
        self.scene, self.status, self.errorText, self.outputText = scene, status, errorText, outputText
        self.runningPolls = runningPolls
        self.calls = []
        self.node = None

    def __call__(self, module, node, parameters, wait_for_completion=False, update_display=True):
        self.calls.append(
            {
                "module": module,
                "parameters": dict(parameters),
                "wait": wait_for_completion,
                "update_display": update_display,
            }
        )
        self.node = slicer.vtkMRMLCommandLineModuleNode()
        self.scene.AddNode(self.node)
        self.node.SetErrorText(self.errorText)
        self.node.SetOutputText(self.outputText)
        self.node.SetStatus(self.node.Running if self.runningPolls else self.status)
        return self.node

    def processEvents(self):
        if self.node.GetStatus() == self.node.Cancelling:
            self.node.SetStatus(self.node.Cancelled)
            return
        self.runningPolls -= 1
        if self.runningPolls <= 0 and self.node.IsBusy() and self.node.GetStatus() != self.node.Cancelling:
            self.node.SetStatus(self.status)


def _temporary(scene):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "temporary")
    return node


@pytest.mark.mrml
def test_completed_run_returns_output_and_removes_nodes(mrml):
    scene = mrml.scene
    fake = FakeCli(scene, slicer.vtkMRMLCommandLineModuleNode.Completed, outputText="converged\n")
    temporary = _temporary(scene)
    seen = []
    text = runCliModule(
        "brainsfit",
        {"fixedVolume": "vtkMRMLScalarVolumeNode1"},
        scene=scene,
        title="BRAINSFit",
        temporaryNodes=[temporary],
        runFunction=fake,
        processEvents=fake.processEvents,
        progress=lambda fraction, message: seen.append(fraction),
        pollSeconds=0.0,
    )
    assert text == "converged\n"
    assert fake.calls[0]["parameters"] == {"fixedVolume": "vtkMRMLScalarVolumeNode1"}
    assert fake.calls[0]["update_display"] is False
    assert not scene.IsNodePresent(fake.node) and not scene.IsNodePresent(temporary)
    assert seen[-1] == 1.0


@pytest.mark.mrml
def test_completed_with_errors_raises_the_cause_and_still_cleans_up(mrml):
    scene = mrml.scene
    fake = FakeCli(scene, slicer.vtkMRMLCommandLineModuleNode.CompletedWithErrors, errorText=ITK_ERROR)
    temporary = _temporary(scene)
    with pytest.raises(RegistrationFailedError, match="do not sufficiently overlap") as caught:
        runCliModule(
            "brainsfit",
            {},
            scene=scene,
            title="BRAINSFit",
            temporaryNodes=[temporary],
            runFunction=fake,
            processEvents=fake.processEvents,
            pollSeconds=0.0,
        )
    assert "BRAINSFit failed" in str(caught.value)
    assert "All samples map outside moving image buffer" in str(caught.value)
    assert not scene.IsNodePresent(fake.node) and not scene.IsNodePresent(temporary)


@pytest.mark.mrml
def test_synchronous_run_is_checked_too(mrml):
    """Without an event loop (processEvents None) the run blocks; its status is still checked."""
    scene = mrml.scene
    fake = FakeCli(scene, slicer.vtkMRMLCommandLineModuleNode.CompletedWithErrors, errorText="boom")
    with pytest.raises(RegistrationFailedError, match="boom"):
        runCliModule("brainsfit", {}, scene=scene, runFunction=fake, processEvents=None)
    assert fake.calls[0]["wait"] is True
    assert not scene.IsNodePresent(fake.node)


@pytest.mark.mrml
def test_running_cli_is_polled_and_cancelled_on_request(mrml):
    scene = mrml.scene
    fake = FakeCli(scene, slicer.vtkMRMLCommandLineModuleNode.Completed, runningPolls=1000)
    polls = []

    def shouldCancel():
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(CancelledError):
        runCliModule(
            "brainsfit",
            {},
            scene=scene,
            runFunction=fake,
            processEvents=fake.processEvents,
            shouldCancel=shouldCancel,
            pollSeconds=0.0,
        )
    assert len(polls) == 3  # asked until it said yes, then waited for the CLI to stop
    assert not scene.IsNodePresent(fake.node)


@pytest.mark.mrml
def test_run_that_never_started_is_an_error(mrml):
    with pytest.raises(RegistrationFailedError, match="could not be started"):
        runCliModule("brainsfit", {}, scene=mrml.scene, runFunction=lambda *a, **k: None, processEvents=None)


def test_error_summary_keeps_the_last_meaningful_lines():
    assert errorSummary(ITK_ERROR, maxLines=1) == (
        "The images do not sufficiently overlap. They need to overlap by at least 0.0% of the fixed image."
    )
    assert errorSummary("") == "no error message"
