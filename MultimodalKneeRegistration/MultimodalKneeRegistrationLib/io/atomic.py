"""Writing outputs atomically: a temporary file beside the target, moved into place when complete.

Why: an interrupted or failed run must never leave half a file where a finished one is expected,
and an existing output is never replaced unless the user asked for it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import SimpleITK as sitk

from ..errors import OutputError
from .itk_messages import QuietItk, short_cause

PathLike = Union[str, "os.PathLike[str]"]


def ensure_writable(path: PathLike, overwrite: bool = False, what: str = "output") -> Path:
    """Check that ``path`` can be written now: its folder exists (created if needed) and is
    writable, and the file is absent unless ``overwrite``. Call it before long work.

    Example:
        >>> ensure_writable("out/transform.tfm", overwrite=False)
    """
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"{what} '{path}' is a folder", "give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{what} '{path}' already exists",
                          "pass --overwrite (overwrite=True) to replace it, or choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".mkr-probe-", delete=True)
        probe.close()
    except OSError as error:
        raise OutputError(f"cannot write into folder '{folder}' ({error.strerror or error})",
                          "choose a folder you can write to, or fix its permissions") from None
    return path


def _atomic(path: PathLike, overwrite: bool, what: str, write: Callable[[Path], None]) -> Path:
    """Run ``write(temp_path)`` in a private folder beside ``path``, then move the result(s) in."""
    path = ensure_writable(path, overwrite, what)
    workdir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        temp = workdir / path.name
        try:
            write(temp)
        except RuntimeError as error:
            raise OutputError(f"cannot write {what} '{path}' ({short_cause(error)})",
                              "check the free disk space and the file extension") from None
        except OSError as error:
            raise OutputError(f"cannot write {what} '{path}' ({error.strerror or error})",
                              "check the free disk space and the folder's permissions") from None
        # Side files first (.raw of .mhd, .img of .hdr), so the header never points at nothing.
        produced = sorted(workdir.iterdir(), key=lambda p: p.name == path.name)
        for item in produced:
            if item.name != path.name and (path.parent / item.name).exists() and not overwrite:
                raise OutputError(f"'{path.parent / item.name}' already exists", "pass --overwrite")
        for item in produced:
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path


def write_image_atomic(image: sitk.Image, path: PathLike, overwrite: bool = False,
                       compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the extension) without ever leaving half a file.

    Example:
        >>> write_image_atomic(resampled, "out/registered_moving.nrrd", overwrite=True)
    """
    def write(temp: Path) -> None:
        with QuietItk():
            sitk.WriteImage(image, str(temp), compress and temp.suffix.lower() != ".png")

    return _atomic(path, overwrite, "image", write)


def write_transform_atomic(transform: sitk.Transform, path: PathLike, overwrite: bool = False) -> Path:
    """Write an ITK transform file (.tfm/.txt/.h5) without ever leaving half a file.

    Example:
        >>> write_transform_atomic(result.transform, "out/transform.tfm")
    """
    return _atomic(path, overwrite, "transform", lambda temp: sitk.WriteTransform(transform, str(temp)))


def _json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf as null (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return _json_ready(value.to_dict())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


#: A JSON list of numbers spread over several lines by ``indent``: kept on one line for people.
_NUMBER_LIST = re.compile(r"\[(?:\s*-?[0-9][0-9.eE+-]*\s*,)*\s*-?[0-9][0-9.eE+-]*\s*\]")


def write_json_atomic(data: Any, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``data`` as indented, strict JSON without ever leaving half a file.

    Example:
        >>> write_json_atomic({"ok": True}, "out/report.json")
    """
    text = json.dumps(_json_ready(data), indent=2, allow_nan=False) + "\n"
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text)

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return _atomic(path, overwrite, "JSON file", write)
