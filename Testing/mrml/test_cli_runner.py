"""The one CLI helper's own checks that no real run can reach (real runs: test_real_cli_modules.py)."""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.engines.external_process import last_words  # noqa: E402
from MultimodalKneeRegistrationLib.errors import EngineError  # noqa: E402
from MultimodalKneeRegistrationSlicer.cli_runner import runCliModule  # noqa: E402

ITK_ERROR = """Exception thrown in BRAINSFit:
/work/ITK/Modules/Registration/Metricsv4/include/itkImageToImageMetricv4.hxx:612:
ITK ERROR: MattesMutualInformationImageToImageMetricv4(0x55d1): All samples map outside moving image buffer.
The images do not sufficiently overlap. They need to overlap by at least 0.0% of the fixed image."""


@pytest.mark.mrml
def test_run_that_never_started_is_an_error(mrml):
    """``slicer.cli.run`` returns None when the module is not loaded: a clear error, not a crash."""
    with pytest.raises(EngineError, match="could not be started"):
        runCliModule("brainsfit", {}, scene=mrml.scene, runFunction=lambda *a, **k: None, processEvents=None)


def test_error_summary_starts_at_the_cause():
    summary = last_words(ITK_ERROR, count=2)
    assert summary.startswith("Exception thrown in BRAINSFit:")
    assert "All samples map outside moving image buffer" in last_words(ITK_ERROR)
    assert last_words("") == "no message"
