"""Registration engines behind one interface (``base.RegistrationEngine``).

``simpleitk_engine`` runs everywhere (outside Slicer, in CI); ``brainsfit`` hands the same working
images, start and plan to BRAINSFit (the executable outside Slicer, Slicer's CLI module inside it).
``engine_named`` turns the name a user types into an engine.
"""

from typing import Union

from .base import EngineOutput, RegistrationEngine
from .simpleitk_engine import SimpleITKEngine

#: Engine names a user can choose (command line ``--engine``, the Slicer panel).
ENGINE_NAMES = ("SimpleITK", "BRAINSFit")


def engine_named(engine: Union[str, RegistrationEngine, None], brainsfit: str = None) -> RegistrationEngine:
    """The engine called ``engine`` (an engine object passes through); ``brainsfit``: its executable."""
    from ..errors import InputError

    if engine is None or engine == "SimpleITK":
        return SimpleITKEngine()
    if engine == "BRAINSFit":
        from .brainsfit import BrainsFitEngine, BrainsFitExecutable, find_brainsfit

        return BrainsFitEngine(BrainsFitExecutable(find_brainsfit(brainsfit)))
    if isinstance(engine, str):
        raise InputError(f"unknown engine {engine!r}", f"use one of {', '.join(ENGINE_NAMES)}")
    return engine


__all__ = ["ENGINE_NAMES", "EngineOutput", "RegistrationEngine", "SimpleITKEngine", "engine_named"]
