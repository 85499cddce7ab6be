"""What makes a cube cut from a clinical CT look like a real micro-CT: storage, texture, artefacts.

Why: a CT resampled onto a fine grid is smooth, stored in HU and fills its whole box. A real
micro-CT (SkyScan, Scanco, Nikon) is none of these: it stores 8-bit or 16-bit grey values or scaled
attenuation (with an offset, sometimes with the slope inverted), resolves the trabeculae far below
the MRI's voxel, is noisy at the voxel scale, has ring artefacts (concentric about the scan axis,
from miscalibrated detector pixels) and beam hardening (cupping: lower values towards the axis),
and is reconstructed only inside a cylinder (zeros outside). A registration that only ever saw
HU-like cubes could silently depend on any of these; this module puts them into generated cases.

Conventions: arrays are numpy views of SimpleITK images, ``(k, j, i)``; the scan axis is the grid's
third index axis ``k`` (numpy axis 0) through the grid centre, so every radial pattern is one 2-D
``(j, i)`` table broadcast over the slices. Everything runs in place on one float32 HU array, in slabs
where it can, so a 40 M-voxel cube needs at most ~3 full-size float32 buffers. Every random part
draws from its own generator seeded from ``(seed, part)``: the look is a pure function of the seed.

Example:
    >>> outside = add_microct_look(hu_array, spacing_mm=0.1, noise_hu=30.0, seed=7)
    >>> stored = to_storage(hu_array, "uint8")
    >>> stored[:, outside] = storage_zero("uint8")
"""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import SimpleITK as sitk

#: How a cube may look: "ct" (the resampled CT, plus optional mild noise) or "microct" (this module).
LOOKS = ("ct", "microct")
#: How a cube may store its values (see ``to_storage``).
UNITS = ("hu", "scaled", "uint8", "uint16-offset", "inverted")
#: HU above which a CT voxel counts as bone (cortex and dense trabecular bone).
BONE_HU = 300.0
#: Micro-CT "scanner units" per HU for cubes stored as uint16 ("scaled": (HU + 1024) x 10; "inverted"):
#: micro-CT data are rarely in HU.
UNITS_PER_HU = 10.0
#: "uint8": the HU window mapped onto 0-255 (clipped on both sides).
UINT8_WINDOW_HU = (-1000.0, 2000.0)
#: "uint16-offset": value = slope * mu + offset, mu the attenuation relative to water ((HU + 1000) / 1000).
OFFSET_SLOPE = 8000.0
OFFSET_UNITS = 4096.0
#: "inverted": value = top - UNITS_PER_HU * (HU + 1024): air bright, dense bone dark.
INVERTED_TOP = 45000.0
#: Trabecular texture: smoothed white noise (Gaussian sigma in mm, at least TEXTURE_MIN_SIGMA_VOXELS),
#: pushed towards two phases by tanh and modulating bone HU by +-TEXTURE_DEPTH.
TEXTURE_SIGMA_MM = 0.12
TEXTURE_MIN_SIGMA_VOXELS = 0.6
TEXTURE_DEPTH = 0.6
TEXTURE_SHARPNESS = 2.0
#: Cupping: attenuation at the axis this fraction below the one at the cylinder's rim (parabolic).
CUPPING = 0.06
#: Rings: this fraction of integer radii carries a ring of up to RING_FRACTION of the bone/soft-tissue
#: contrast (CONTRAST_HU), either sign.
RING_SHARE = 0.15
RING_FRACTION = 0.03
CONTRAST_HU = 1000.0
#: Slices per slab when working slab by slab.
SLAB = 16
_PARTS = {"texture": 1, "rings": 2, "noise": 3}


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _PARTS[part]])


def _slabs(depth: int) -> Iterator[slice]:
    for start in range(0, depth, SLAB):
        yield slice(start, min(depth, start + SLAB))


def radii(shape: Tuple[int, ...]) -> np.ndarray:
    """Distance (voxels) of each ``(j, i)`` voxel from the scan axis: the slice's centre.

    Example:
        >>> radii((1, 3, 3))[1, 1]
        0.0
    """
    ny, nx = shape[-2:]
    j, i = np.ogrid[:ny, :nx]
    return np.hypot(j - (ny - 1) / 2.0, i - (nx - 1) / 2.0).astype(np.float32)


def field_of_view_radius(shape: Tuple[int, ...]) -> float:
    """Radius (voxels) of the reconstruction circle: the circle inscribed in the ``(j, i)`` slice."""
    return min(shape[-2:]) / 2.0


def outside_cylinder(shape: Tuple[int, ...]) -> np.ndarray:
    """``(j, i)`` mask of the voxels outside the inscribed circle: where a reconstruction stores zero."""
    return radii(shape) > field_of_view_radius(shape)


def add_trabecular_texture(array: np.ndarray, spacing_mm: float, seed: int) -> None:
    """Modulate bone (HU > ``BONE_HU``) by a two-phase random pattern of ~0.1-0.5 mm features, in place.

    Why: a CT's 0.4 mm voxel averages trabeculae and marrow into one grey; a micro-CT resolves them.
    Smoothed white noise (sigma ``TEXTURE_SIGMA_MM``) thresholded softly gives blobs and struts a few
    sigma across; voxels that are not bone are left exactly as they were.
    """
    sigma = max(TEXTURE_SIGMA_MM / float(spacing_mm), TEXTURE_MIN_SIGMA_VOXELS)
    white = sitk.GetImageFromArray(_rng(seed, "texture").standard_normal(array.shape, dtype=np.float32))
    smooth = sitk.DiscreteGaussian(white, sigma**2, 32, 0.01, False)
    del white
    field = sitk.GetArrayViewFromImage(smooth)
    scale = TEXTURE_SHARPNESS / max(float(field[::4, ::4, ::4].std()), 1e-6)
    for part in _slabs(array.shape[0]):
        factor = np.tanh(field[part] * scale) * TEXTURE_DEPTH + 1.0
        np.multiply(array[part], factor, out=array[part], where=array[part] > BONE_HU)


def add_cupping(array: np.ndarray, strength: float = CUPPING) -> None:
    """Beam hardening, in place: attenuation (HU + 1000) lowered by ``strength`` at the axis, 0 at the rim.

    Why: a polychromatic beam hardens along long paths through the object, so a reconstruction reads
    the centre of the cylinder darker than its edge ("cupping").
    """
    r = np.minimum(radii(array.shape) / field_of_view_radius(array.shape), 1.0)
    factor = 1.0 - strength * (1.0 - r * r)
    for part in _slabs(array.shape[0]):
        array[part] += 1000.0
        array[part] *= factor
        array[part] -= 1000.0


def ring_profile(radius_voxels: float, seed: int) -> np.ndarray:
    """Ring offsets (HU) by integer radius 0 ... ceil(radius): mostly 0, a few rings of either sign."""
    rng = _rng(seed, "rings")
    count = int(np.ceil(radius_voxels)) + 2
    rings = rng.random(count) < RING_SHARE
    size = rng.uniform(0.5, 1.0, count) * np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return (rings * size * RING_FRACTION * CONTRAST_HU).astype(np.float32)


def add_rings(array: np.ndarray, seed: int) -> None:
    """Ring artefacts, in place: every voxel at the same integer distance from the axis gets one offset."""
    r = radii(array.shape)
    offsets = ring_profile(field_of_view_radius(array.shape), seed)
    table = offsets[np.minimum(r.astype(np.int64), len(offsets) - 1)]
    for part in _slabs(array.shape[0]):
        array[part] += table


def add_voxel_noise(array: np.ndarray, noise_hu: float, seed: int) -> None:
    """White Gaussian noise of ``noise_hu`` (HU), in place, drawn slab by slab in float32."""
    if noise_hu <= 0:
        return
    rng = _rng(seed, "noise")
    for part in _slabs(array.shape[0]):
        block = rng.standard_normal(array[part].shape, dtype=np.float32)
        block *= np.float32(noise_hu)
        array[part] += block


def add_microct_look(array: np.ndarray, spacing_mm: float, noise_hu: float, seed: int) -> np.ndarray:
    """Texture, cupping, rings and noise, in place on an HU array; returns the ``(j, i)`` outside-FOV mask.

    The order follows the physics: the object (texture), its reconstruction (cupping, rings), the
    detector (noise). The caller stores the values (``to_storage``) and then writes
    ``storage_zero(units)`` outside the cylinder.

    Example:
        >>> outside = add_microct_look(hu_array, 0.1, 30.0, seed=7)
    """
    add_trabecular_texture(array, spacing_mm, seed)
    add_cupping(array)
    add_rings(array, seed)
    add_voxel_noise(array, noise_hu, seed)
    return outside_cylinder(array.shape)


def to_storage(array: np.ndarray, units: str) -> np.ndarray:
    """The HU ``array`` stored as ``units`` (may reuse ``array`` as scratch, so do not use it after).

    "hu": int16 HU; "scaled": uint16, (HU + 1024) x 10; "uint8": the window ``UINT8_WINDOW_HU``
    scaled onto 0-255; "uint16-offset": uint16, ``OFFSET_SLOPE`` x mu + ``OFFSET_UNITS``; "inverted":
    uint16 with a negative slope. All are rounded and clipped to the type's range.

    Example:
        >>> to_storage(np.array([-1000.0, 2000.0], np.float32), "uint8")
        array([  0, 255], dtype=uint8)
    """
    if units == "hu":
        return np.clip(np.round(array), -1024, 32767).astype(np.int16)
    if units == "scaled":
        return np.clip((array + 1024.0) * UNITS_PER_HU, 0, 65535).astype(np.uint16)
    if units == "uint8":
        low, high = UINT8_WINDOW_HU
        slope, offset, top, dtype = 255.0 / (high - low), -low * 255.0 / (high - low), 255, np.uint8
    elif units == "uint16-offset":
        slope, offset, top, dtype = OFFSET_SLOPE / 1000.0, OFFSET_SLOPE + OFFSET_UNITS, 65535, np.uint16
    elif units == "inverted":
        slope, offset, top, dtype = -UNITS_PER_HU, INVERTED_TOP - 1024.0 * UNITS_PER_HU, 65535, np.uint16
    else:
        raise ValueError(f"unknown cube units {units!r}: use one of {UNITS}")
    array *= np.float32(slope)
    array += np.float32(offset)
    np.clip(array, 0, top, out=array)
    np.rint(array, out=array)
    return array.astype(dtype)


def storage_zero(units: str) -> int:
    """The value a reconstruction stores outside its field of view: the lowest value ``units`` produce."""
    return -1024 if units == "hu" else 0
