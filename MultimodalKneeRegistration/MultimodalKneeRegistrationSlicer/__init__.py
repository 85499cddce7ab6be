"""The Slicer side of MultimodalKneeRegistration: every import of ``slicer`` outside the module file.

Why: the core (``MultimodalKneeRegistrationLib``) never imports Slicer, so it runs and is tested
anywhere. This package adapts it to MRML: volume nodes <-> SimpleITK images and every RAS <-> LPS
conversion (``coordinates``, ``volume_adapter``, ``transform_adapter``, ``roi_adapter``), Crop Volume
(``crop_volume``), the one CLI runner (``cli_runner``), BRAINSFit (``brainsfit_engine``), the panel's
settings (``parameters``), per-bone registration's segmentations and transform nodes
(``per_bone_adapter``) and the logic itself (``logic``). Its MRML code runs on the slicer-core
wheel, so it is tested with a real scene outside the Slicer application.

Example (Slicer's Python console):
    >>> from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic
    >>> out = KneeRegistrationLogic().register(getNode("CTBrain"), getNode("MRBrainT1"))  # doctest: +SKIP
"""
