"""Reading transform files: a 3D rigid or affine ITK transform, or a clear reason why not."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..geometry import deformable_parts
from .atomic import PathLike
from .itk_messages import QuietItk, short_cause


def read_transform(path: PathLike, name: str = "initial transform") -> sitk.Transform:
    """Read an ITK transform file (.tfm, .txt, .h5, .mat) of a 3D transform.

    Example:
        >>> t = read_transform("reference_ct_to_mr.tfm")  # fixed -> moving, LPS
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{name} '{path}' does not exist" if not path.exists() else
                         f"{name} '{path}' is a folder, not a transform file", "check the path")
    with QuietItk():
        try:
            transform = sitk.ReadTransform(str(path))
        except RuntimeError as error:
            raise InputError(f"{name} '{path}' is not a transform file ITK can read ({_why_unreadable(path, error)})",
                             "give an ITK transform (.tfm/.txt/.h5/.mat), e.g. one saved from Slicer's "
                             "Data module or written by this tool") from None
    if transform.GetDimension() != 3:
        raise InputError(f"{name} '{path}' is a {transform.GetDimension()}D transform", "give a 3D transform")
    deformable = deformable_parts(transform)
    if deformable:
        raise InputError(f"{name} '{path}' is not rigid or affine (it holds a {', '.join(deformable)})",
                         "give a rigid or affine transform; for a deformable one, resample the moving image "
                         "with it first and register the result")
    return transform


#: The file name endings ITK chooses a transform reader by.
TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat", ".xfm")


def _why_unreadable(path: Path, error: BaseException) -> str:
    """The cause in the user's terms: ITK picks its reader by the file name ending and otherwise
    says "set the suffix to an unsupported type", which reads like an instruction."""
    if path.suffix.lower() not in TRANSFORM_SUFFIXES:
        ending = f"ends in '{path.suffix}'" if path.suffix else "has no ending"
        return f"its name {ending}, not one of {', '.join(TRANSFORM_SUFFIXES)}"
    cause = short_cause(error)
    return "its contents are not a transform" if "suffix" in cause.lower() else cause

