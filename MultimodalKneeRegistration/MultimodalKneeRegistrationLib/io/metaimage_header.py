"""Where a MetaImage file (.mha, .mhd) keeps its voxels: LOCAL after the header or a raw file, zlib or not.

Why: like NRRD, MetaImage stores one block of voxel bytes after a text header; ITK reads it whole.
We take the geometry from ITK and only find the bytes here. Format (ITK's MetaIO): ``Key = Value``
lines, ``ElementDataFile`` last; ``LOCAL`` means the data follow that line; ``HeaderSize = -1``
means the data are the last bytes of the data file; ``CompressedData = True`` is a zlib stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

from .raw_slabs import RawLayout

_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
    "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_MAX_HEADER_BYTES = 1 << 20


def read_metaimage_fields(path: Union[str, Path]) -> Tuple[Dict[str, str], int]:
    """The header's ``Key = Value`` pairs (keys as written) and the offset just after ``ElementDataFile``."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as handle:
        while handle.tell() < _MAX_HEADER_BYTES:
            line = handle.readline(1 << 16)
            if not line:
                break
            text = line.decode("latin-1").strip()
            if "=" not in text:
                continue
            key, value = (part.strip() for part in text.split("=", 1))
            fields[key] = value
            if key == "ElementDataFile":
                break
        return fields, handle.tell()


def metaimage_layout(path: Union[str, Path]) -> Tuple[RawLayout, Tuple[int, ...], str]:
    """``(layout, sizes, reason)``: ``reason`` is empty when the voxels can be streamed.

    Example:
        >>> layout, sizes, reason = metaimage_layout("micro_ct.mhd")  # doctest: +SKIP
    """
    path = Path(path)
    fields, data_start = read_metaimage_fields(path)
    sizes = tuple(int(s) for s in fields.get("DimSize", "").split())
    kind = _TYPES.get(fields.get("ElementType", "").upper())
    if kind is None:
        return None, sizes, f"MetaImage element type '{fields.get('ElementType', '?')}' is not streamed"
    if int(fields.get("ElementNumberOfChannels", "1")) != 1:
        return None, sizes, "MetaImage files with several values per voxel are not streamed"
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
    order = ">" if msb.strip().lower() == "true" else "<"
    compressed = fields.get("CompressedData", "False").strip().lower() == "true"
    header_size = int(fields.get("HeaderSize", "0"))
    data_file = fields.get("ElementDataFile", "")
    if data_file.split()[:1] == ["LIST"] or len(data_file.split()) > 1:
        return None, sizes, "MetaImage data split over several files are not streamed"
    if data_file.upper() == "LOCAL":
        target, offset = path, data_start
        if header_size:
            return None, sizes, "a HeaderSize in a MetaImage file with LOCAL data is not streamed"
    else:
        target = Path(data_file) if Path(data_file).is_absolute() else path.parent / data_file
        offset = header_size
        if compressed and header_size:
            return None, sizes, "a HeaderSize before compressed MetaImage data is not streamed"
    layout = RawLayout(str(target), offset, "zlib" if compressed else "raw", order + kind)
    return layout, sizes, ""
