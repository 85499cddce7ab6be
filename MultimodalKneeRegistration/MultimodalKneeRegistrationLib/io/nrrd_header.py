"""Where a NRRD file keeps its voxels (attached or detached header, raw or gzip, either byte order).

Why: ITK's NRRD reader reads the whole volume at once. Its geometry we still take from ITK (so the
streamed and the whole-file paths cannot disagree); this parser only finds the voxel bytes. Format:
teem.sourceforge.net/nrrd/format.html (NRRD0001-NRRD0005): a magic line, ``field: value`` lines,
``key:=value`` lines and ``#`` comments, then a blank line and the data (attached), or a ``data file``
field naming them (detached, ``.nhdr``). ``byte skip: -1`` means "the last bytes of the file".
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

from .raw_slabs import RawLayout

#: NRRD type names (all spellings the format allows) -> numpy kind and size.
_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t"), "i8"),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    "float": "f4",
    "double": "f8",
}
_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}
_MAX_HEADER_BYTES = 1 << 20


def read_nrrd_fields(path: Union[str, Path]) -> Tuple[Dict[str, str], int]:
    """The header's fields (lower-case names) and the byte offset where attached data start."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as handle:
        magic = handle.readline(64)
        if not magic.startswith(b"NRRD"):
            raise ValueError("no NRRD magic")
        while True:
            line = handle.readline(1 << 16)
            if not line or handle.tell() > _MAX_HEADER_BYTES:
                break  # detached header: the file ends with the header
            text = line.decode("latin-1").rstrip("\r\n")
            if text == "":
                break
            if text.startswith("#") or _is_key_value(text):
                continue
            if ":" in text:
                name, value = text.split(":", 1)
                fields[name.strip().lower()] = value.strip()
                if name.strip().lower() in ("data file", "datafile") and value.strip().upper().startswith("LIST"):
                    break  # the file names that follow are not fields
        return fields, handle.tell()


def nrrd_layout(path: Union[str, Path]) -> Tuple[RawLayout, Tuple[int, ...], str]:
    """``(layout, sizes, reason)``: ``reason`` is empty when the voxels can be streamed.

    Example:
        >>> layout, sizes, reason = nrrd_layout("micro_ct.nrrd")  # doctest: +SKIP
    """
    path = Path(path)
    fields, data_start = read_nrrd_fields(path)
    sizes = tuple(int(s) for s in fields.get("sizes", "").split())
    kind = _TYPES.get(fields.get("type", "").lower())
    encoding = _ENCODINGS.get(fields.get("encoding", "").lower())
    if kind is None:
        return _no(f"NRRD type '{fields.get('type', '?')}' is not streamed", sizes)
    if encoding is None:
        return _no(f"NRRD encoding '{fields.get('encoding', '?')}' is not streamed (raw and gzip are)", sizes)
    order = "<"
    if int(kind[1]) > 1:
        endian = fields.get("endian", "").lower()
        if endian not in ("little", "big"):
            return _no("the NRRD header gives no byte order ('endian')", sizes)
        order = "<" if endian == "little" else ">"
    data_file = fields.get("data file", fields.get("datafile"))
    byte_skip = int(fields.get("byte skip", "0"))
    line_skip = int(fields.get("line skip", "0"))
    if data_file is None:
        target, offset = path, data_start + byte_skip
        if byte_skip and encoding != "raw":
            return _no("a byte skip in gzip-encoded NRRD data is not streamed", sizes)
        if byte_skip < 0 or line_skip:
            return _no("a line or negative byte skip in an attached NRRD header is not streamed", sizes)
    else:
        parts = data_file.split()
        if len(parts) != 1 or parts[0].upper() == "LIST":
            return _no("NRRD data split over several files are not streamed", sizes)
        target = Path(parts[0]) if Path(parts[0]).is_absolute() else path.parent / parts[0]
        offset = byte_skip
        if encoding != "raw" and (byte_skip or line_skip):
            return _no("a byte or line skip in gzip-encoded NRRD data is not streamed", sizes)
        if byte_skip < -1:
            return _no(f"NRRD byte skip {byte_skip} is not valid", sizes)
    layout = RawLayout(str(target), offset, encoding, order + kind, line_skip)
    return layout, sizes, ""


def _is_key_value(text: str) -> bool:
    """``key:=value`` lines carry free metadata, not fields (a field is ``name: value``)."""
    return ":=" in text and (": " not in text or text.index(":=") < text.index(": "))


def _no(reason: str, sizes):
    return None, sizes, reason
