"""Colour: the source's tags read and written back, the YUV matrix and range of every RGB conversion, and the
transfer curves that turn display-referred RGB into linear light for EXR.

What is colour-managed and what is not (docs/media.md): the four tags (primaries, transfer, matrix, range) are kept
from source to output, and decoding to RGB and encoding back to YUV use the source's matrix and range, so a BT.709
clip stays BT.709 and a full-range clip stays full range. No gamut or transfer conversion happens anywhere, except
EXR frames, which hold linear light (the inverse of the source's transfer curve; sRGB when it names none).
An untagged source is decoded and encoded with swscale's default, BT.601 limited range, and written untagged, as
before: the samples then round-trip unchanged and any reader treats the source and the edit alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from v2vz.media.info import MATRICES, PRIMARIES, RANGES, TRANSFERS, ColourTags

# The matrices swscale converts with; another tagged matrix is decoded by FFmpeg's own reading of the frame and
# not written back (an output is never tagged with a matrix its samples were not encoded with).
_SWS_MATRIX: dict[str, Colorspace] = {
    "bt709": Colorspace.ITU709,
    "fcc": Colorspace.FCC,
    "bt470bg": Colorspace.ITU601,
    "smpte170m": Colorspace.ITU601,
    "smpte240m": Colorspace.SMPTE240M,
    "bt2020nc": Colorspace.BT2020,
    "bt2020c": Colorspace.BT2020,
}
_SWS_RANGE: dict[str, ColorRange] = {"limited": ColorRange.MPEG, "full": ColorRange.JPEG}
_LIMITED_ONLY = frozenset({"prores_422hq", "prores_4444"})  # ProRes has no full-range flag: it is video range


def _code(table: dict[int, str], name: str | None, unspecified: int) -> int:
    for code, known in table.items():
        if known == name:
            return code
    return unspecified


def decode_options(tags: ColourTags) -> dict[str, object]:
    """Keyword arguments for `VideoFrame.to_ndarray` / `reformat` that read YUV with the source's matrix and range
    (empty for an untagged source: FFmpeg's default, as before)."""
    options: dict[str, object] = {}
    if tags.matrix in _SWS_MATRIX:
        options["src_colorspace"] = _SWS_MATRIX[tags.matrix]
    if tags.range in _SWS_RANGE:
        options["src_color_range"] = _SWS_RANGE[tags.range]
    return options


def output_tags(source: ColourTags, codec: str) -> ColourTags:
    """The tags an output of `codec` carries: the source's, less a matrix swscale cannot encode with, and limited
    range for ProRes (a full-range source is written limited there: the codec cannot say otherwise)."""
    matrix = source.matrix if source.matrix in _SWS_MATRIX else None
    colour_range = source.range
    if codec in _LIMITED_ONLY and colour_range == "full":
        colour_range = "limited"
    return dataclasses.replace(source, matrix=matrix, range=colour_range)


def encode_options(tags: ColourTags) -> dict[str, object]:
    """Keyword arguments for `VideoFrame.reformat` that encode RGB to YUV with `tags`' matrix and range (BT.601
    limited range where they are untagged)."""
    return {
        "dst_colorspace": _SWS_MATRIX.get(tags.matrix or "", Colorspace.ITU601),
        "dst_color_range": _SWS_RANGE.get(tags.range or "", ColorRange.MPEG),
    }


def tag(target: object, tags: ColourTags) -> None:
    """Set the four tags on an encoder before it opens (the bitstream's VUI and the MOV/MP4 `colr` box carry them)
    or on a frame (ProRes writes each frame's own into its frame header)."""
    target.color_primaries = _code(PRIMARIES, tags.primaries, 2)
    target.color_trc = _code(TRANSFERS, tags.transfer, 2)
    target.colorspace = _code(MATRICES, tags.matrix, 2)
    target.color_range = _code(RANGES, tags.range, 0)


# --- transfer curves: encoded value V in [0, 1] -> linear light L ---------------------------------------------

_REC709_ALPHA, _REC709_BETA = 1.09929682680944, 0.018053968510807  # BT.709 / BT.601 / BT.2020 OETF constants
_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073
PQ_WHITE_NITS = 100.0  # PQ is absolute light: 1.0 in the EXR is 100 cd/m2 (SDR reference white)


def _rec709(v: np.ndarray) -> np.ndarray:
    knee = 4.5 * _REC709_BETA
    return np.where(v < knee, v / 4.5, ((v + _REC709_ALPHA - 1) / _REC709_ALPHA) ** (1 / 0.45))


def _srgb(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _smpte240m(v: np.ndarray) -> np.ndarray:
    return np.where(v < 4 * 0.0228, v / 4, ((v + 0.1115) / 1.1115) ** (1 / 0.45))


def _pq(v: np.ndarray) -> np.ndarray:
    p = v ** (1 / _PQ_M2)
    return (np.maximum(p - _PQ_C1, 0) / (_PQ_C2 - _PQ_C3 * p)) ** (1 / _PQ_M1) * (10000 / PQ_WHITE_NITS)


def _hlg(v: np.ndarray) -> np.ndarray:
    high = (np.exp((np.maximum(v, 0.5) - _HLG_C) / _HLG_A) + _HLG_B) / 12
    return np.where(v <= 0.5, v * v / 3, high)


def _log(decades: float) -> Callable[[np.ndarray], np.ndarray]:
    def inverse(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, 10 ** ((v - 1) * decades), 0.0)

    return inverse


_TO_LINEAR: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bt709": _rec709,
    "smpte170m": _rec709,
    "bt2020-10": _rec709,
    "bt2020-12": _rec709,
    "bt1361e": _rec709,
    "iec61966-2-4": _rec709,
    "iec61966-2-1": _srgb,
    "gamma22": lambda v: v**2.2,
    "gamma28": lambda v: v**2.8,
    "smpte240m": _smpte240m,
    "linear": lambda v: v,
    "log100": _log(2.0),
    "log316": _log(2.5),
    "smpte2084": _pq,
    "arib-std-b67": _hlg,
    "smpte428": lambda v: v**2.6 * (52.37 / 48),
}


def linear_curve(transfer: str | None) -> str:
    """The curve EXR frames are linearized with: the source's transfer, sRGB when it names none."""
    return transfer if transfer in _TO_LINEAR else "iec61966-2-1"


def to_linear(rgb: np.ndarray, transfer: str | None) -> np.ndarray:
    """Display-referred RGB in [0, 1] (float32) as linear light, by the inverse of the source's transfer curve."""
    values = np.clip(rgb.astype(np.float64, copy=False), 0.0, 1.0)
    return _TO_LINEAR[linear_curve(transfer)](values).astype(np.float32)
