"""What the core and the MRML tests share: where the real data and the real Slicer binaries are.

Why: tests that need ``../shared`` (the porcine CT/MR pair, the BRAINSFit and
ResampleScalarVectorDWIVolume binaries built from source) must find them the same way and, where
they are absent, skip saying exactly which path was looked at. Never fake them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
SLICER_CLI = SHARED / "tools" / "slicer-cli"
REFERENCE_TRANSFORM = REPO / "Testing" / "data" / "porcine_ct_to_mr_bone_aligned.tfm"


def porcine_data_folder() -> Path:
    """$MKR_SHARED_DATA (the folder or its parent), else ``shared/data/porcine_ct_mr`` beside the repo."""
    env = os.environ.get("MKR_SHARED_DATA")
    if not env:
        return SHARED / "data" / "porcine_ct_mr"
    base = Path(env)
    return (base / "porcine_ct_mr").resolve() if (base / "porcine_ct_mr").is_dir() else base.resolve()


def require_porcine_data() -> Path:
    folder = porcine_data_folder()
    if not (folder / "CT.nrrd").is_file() or not (folder / "MR_T2.nrrd").is_file():
        pytest.skip(f"real data not found: {folder} has no CT.nrrd/MR_T2.nrrd "
                    "(set MKR_SHARED_DATA to the porcine_ct_mr folder)")
    return folder


def require_cli_binary(name: str) -> Path:
    """The real Slicer CLI executable ``name`` (BRAINSFit, ResampleScalarVectorDWIVolume), or a skip."""
    path = Path(os.environ.get(f"MKR_{name.upper()}", SLICER_CLI / "bin" / name))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"the real {name} binary was not found at {path} (../shared/tools/slicer-cli/bin)")
    return path


def require_slicer_core_cli():
    """``slicer_core_cli`` (runs CLI binaries through Slicer's own vtkSlicerCLIModuleLogic), or a skip."""
    import sys

    if not (SLICER_CLI / "slicer_core_cli.py").is_file():
        pytest.skip(f"slicer_core_cli.py not found in {SLICER_CLI}")
    if str(SLICER_CLI) not in sys.path:
        sys.path.insert(0, str(SLICER_CLI))
    try:
        import slicer_core_cli
    except (ImportError, OSError, AttributeError) as error:
        pytest.skip(f"slicer_core_cli cannot drive Slicer's CLI logic here: {error}")
    return slicer_core_cli


def _setNodeParameters(node, parameters) -> None:
    """As Slicer's ``slicer.cli.setNodeParameters`` (Base/Python/slicer/cli.py) sets them."""
    import slicer

    for key, value in parameters.items():
        if isinstance(value, str):
            node.SetParameterAsString(key, value)
        elif isinstance(value, bool):
            node.SetParameterAsBool(key, value)
        elif isinstance(value, int):
            node.SetParameterAsInt(key, value)
        elif isinstance(value, float):
            node.SetParameterAsDouble(key, value)
        elif isinstance(value, slicer.vtkMRMLNode):
            node.SetParameterAsNode(key, value)
        elif isinstance(value, (list, tuple)):
            node.SetParameterAsString(key, ",".join(str(v) for v in value))


def cliRunFunction(cliLogic):
    """``slicer.cli.run`` for the slicer-core wheel (which has no ``slicer.cli``): a real CLI node of
    ``cliLogic``, its parameters set as Slicer sets them, run by Slicer's own vtkSlicerCLIModuleLogic
    (``Apply`` in the background, or ``ApplyAndWait``)."""

    def run(module, node=None, parameters=None, wait_for_completion=False, update_display=True):
        node = node or cliLogic.CreateNodeInScene()
        _setNodeParameters(node, parameters or {})
        if wait_for_completion:
            cliLogic.ApplyAndWait(node, update_display)
        else:
            cliLogic.Apply(node, update_display)
        return node

    return run
