"""MultimodalKneeRegistration core: MRI <-> CT / micro-CT registration that just works.

Pure Python (SimpleITK + numpy); never imports slicer, qt, ctk or vtk, so it runs and is tested
outside 3D Slicer and powers both the Slicer module and the ``knee-register`` command line.

Example:
    >>> import SimpleITK as sitk
    >>> from MultimodalKneeRegistrationLib import register, settings_for_preset
    >>> result = register(sitk.ReadImage("ct.nrrd"), sitk.ReadImage("mr.nrrd"),
    ...                   settings_for_preset("mri-ct"))
    >>> sitk.WriteTransform(result.transform, "ct_to_mr.tfm")  # fixed -> moving, LPS
"""

from .errors import (
    CancelledError,
    InputError,
    KneeRegistrationError,
    OutputError,
    RegistrationFailedError,
)
from .settings import PRESETS, RegistrationSettings, settings_for_preset

__version__ = "0.1.0"

__all__ = [
    "CancelledError",
    "InputError",
    "KneeRegistrationError",
    "OutputError",
    "PRESETS",
    "RegistrationFailedError",
    "RegistrationSettings",
    "__version__",
    "register",
    "settings_for_preset",
]


def register(*args, **kwargs):
    """Register ``moving`` to ``fixed``; see ``pipeline.register`` (imported lazily)."""
    from .pipeline import register as _register

    return _register(*args, **kwargs)
