"""Registration engines behind one interface (``RegistrationEngine``).

The SimpleITK engine runs everywhere (outside Slicer, in CI); the BRAINSFit engine lives on the
Slicer side, because it needs Slicer's CLI module, and uses ``brainsfit_parameters`` for its inputs.
"""

from .base import EngineOutput, RegistrationEngine
from .simpleitk_engine import SimpleITKEngine

__all__ = ["EngineOutput", "RegistrationEngine", "SimpleITKEngine"]
