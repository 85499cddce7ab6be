"""Registration engines behind one interface (``base.RegistrationEngine``).

``simpleitk_engine`` runs everywhere (outside Slicer, in CI); ``brainsfit`` hands the same working
images, start and plan to BRAINSFit (the executable outside Slicer, Slicer's CLI module inside it).
``engine_named`` turns the name a user types into an engine.
"""

from typing import Optional, Union

from ..settings import DEFAULT_ENGINE, ENGINE_NAMES
from .base import EngineOutput, RegistrationEngine
from .simpleitk_engine import SimpleITKEngine


def engine_name(text: str) -> str:
    """The engine name as spelt in ``ENGINE_NAMES`` for ``text`` in any case ("brainsfit" -> "BRAINSFit").

    Example:
        >>> engine_name("simpleitk")
        'SimpleITK'
    """
    from ..errors import InputError

    for name in ENGINE_NAMES:
        if name.lower() == str(text).strip().lower():
            return name
    raise InputError(f"unknown engine {text!r}", f"use one of {', '.join(ENGINE_NAMES)} (any case)")


def engine_named(engine: Union[str, RegistrationEngine, None], brainsfit: Optional[str] = None
                 ) -> RegistrationEngine:
    """The engine called ``engine`` (any case; an engine object passes through); ``brainsfit``: its
    executable. A BRAINSFit that cannot be found raises ``EngineError``."""
    if not isinstance(engine, str) and engine is not None:
        return engine
    name = DEFAULT_ENGINE if engine is None else engine_name(engine)
    if name == "BRAINSFit":
        from .brainsfit import BrainsFitEngine, BrainsFitExecutable, find_brainsfit

        return BrainsFitEngine(BrainsFitExecutable(find_brainsfit(brainsfit)))
    return SimpleITKEngine()


__all__ = ["DEFAULT_ENGINE", "ENGINE_NAMES", "EngineOutput", "RegistrationEngine", "SimpleITKEngine", "engine_name",
           "engine_named"]
