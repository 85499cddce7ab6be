"""The voxel size a TIFF file states: resolution tags, or ImageJ's description.

Why: a folder of TIFF slices has no volume header, but many writers put the pixel size in the first
IFD (XResolution 282, YResolution 283 as pixels per ResolutionUnit 296: 2 inch, 3 centimetre), and
ImageJ/Fiji put ``unit=`` and the slice ``spacing=`` in ImageDescription (270) with unit "none".
Plenty of writers also put a meaningless default there (72 or 96 dpi, or ITK's 1 mm): those are
refused, so a wrong voxel size is never taken silently. Format: TIFF 6.0, section 2 (IFD entries of 12 bytes).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

#: Resolutions (dots per inch) that programs write by default: they say nothing about the object.
DEFAULT_DPI = (72.0, 96.0, 150.0, 300.0)
_UNITS_MM = {"mm": 1.0, "millimeter": 1.0, "micron": 1e-3, "microns": 1e-3, "um": 1e-3, "\u00b5m": 1e-3,
             "\\u00b5m": 1e-3, "cm": 10.0, "nm": 1e-6}
#: Micro-CT voxels are 0.5 um to 0.2 mm; a tag outside (0.1 um, 0.5 mm) is a writer's default (ITK writes
#: 25.4 dpi, i.e. 1 mm, for an image without spacing), not a measurement.
_PLAUSIBLE_MM = (1e-4, 0.5)


def read_tiff_tags(path: Union[str, Path]) -> Dict[int, object]:
    """Tags 270, 282, 283 and 296 of the first IFD of a classic TIFF ({} for anything else)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return {}
        order = "<" if head[:2] == b"II" else ">"
        magic, ifd = struct.unpack(order + "HI", head[2:8])
        if magic != 42:
            return {}  # BigTIFF (43) and others: not looked at
        handle.seek(ifd)
        (count,) = struct.unpack(order + "H", handle.read(2))
        entries = [struct.unpack(order + "HHI4s", handle.read(12)) for _ in range(min(count, 4096))]
        tags: Dict[int, object] = {}
        for tag, kind, number, raw in entries:
            if tag in (282, 283) and kind == 5:
                handle.seek(struct.unpack(order + "I", raw)[0])
                numerator, denominator = struct.unpack(order + "II", handle.read(8))
                tags[tag] = numerator / denominator if denominator else 0.0
            elif tag == 296 and kind == 3:
                tags[tag] = struct.unpack(order + "H", raw[:2])[0]
            elif tag == 270 and kind == 2:
                if number > 4:
                    handle.seek(struct.unpack(order + "I", raw)[0])
                    raw = handle.read(min(number, 1 << 16))
                tags[tag] = raw[:number].decode("latin-1").rstrip("\x00")
        return tags


def tiff_spacing(path: Union[str, Path]) -> Optional[Tuple[Tuple[float, float, float], str]]:
    """``((sx, sy, sz), how)`` in mm from the tags of ``path``, or None when they state no meaningful size.

    The slice spacing is ImageJ's ``spacing=`` when given, else the in-plane size (micro-CT
    reconstructions have cubic voxels); ``how`` says which, for the plan's explanation.

    Example:
        >>> tiff_spacing("rec/slice0001.tif")  # doctest: +SKIP
        ((0.02, 0.02, 0.02), 'TIFF resolution tags of slice0001.tif (2.0 um/pixel per cm unit; ...)')
    """
    try:
        tags = read_tiff_tags(path)
    except (OSError, struct.error):
        return None
    xres, yres = float(tags.get(282, 0.0) or 0.0), float(tags.get(283, 0.0) or 0.0)
    if xres <= 0 or yres <= 0 or abs(xres - yres) > 1e-6 * xres:
        return None
    unit = tags.get(296, 2)
    description = str(tags.get(270, ""))
    name = Path(path).name
    if unit == 1 and "ImageJ=" in description:
        match = re.search(r"^unit=(.+)$", description, re.MULTILINE)
        per_unit = _UNITS_MM.get(match.group(1).strip().lower()) if match else None
        if per_unit is None:
            return None
        xy = per_unit / xres
        slice_match = re.search(r"^spacing=([0-9.eE+-]+)$", description, re.MULTILINE)
        z = float(slice_match.group(1)) * per_unit if slice_match else xy
        how = f"ImageJ description of {name} ({match.group(1).strip()})"
    elif unit in (2, 3):
        if unit == 2 and any(abs(xres - dpi) < 1e-6 for dpi in DEFAULT_DPI):
            return None
        xy = (25.4 if unit == 2 else 10.0) / xres
        z, slice_match = xy, None
        how = f"TIFF resolution tags of {name} ({xres:g} pixels per {'inch' if unit == 2 else 'cm'})"
    else:
        return None
    if not all(_PLAUSIBLE_MM[0] <= s <= _PLAUSIBLE_MM[1] for s in (xy, z)):
        return None
    if slice_match is None:
        how += "; slice spacing taken equal to the pixel size (micro-CT voxels are cubic)"
    return (xy, xy, z), how
