"""What a source is before its frames are read: one description for videos and image sequences, and the colour
tags a video file carries (by FFmpeg's names), read without PyAV's decoder or torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

# FFmpeg's names of the ISO/IEC 23091-2 (H.273) code points, as ffprobe prints them.
PRIMARIES: dict[int, str] = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
    10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}  # fmt: skip
TRANSFERS: dict[int, str] = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
    10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
    16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}  # fmt: skip
MATRICES: dict[int, str] = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc",
    10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp",
}  # fmt: skip
RANGES: dict[int, str] = {1: "limited", 2: "full"}


@dataclass(frozen=True)
class ColourTags:
    """A video's colour description as its file tags it, by FFmpeg's names; None where the file says nothing.

    primaries and transfer (e.g. "bt709") describe the RGB; matrix ("bt709", "smpte170m", "bt2020nc") and range
    ("limited" or "full") say how YUV samples encode it. See v2vz_engine/media/colour.py for what is done with each.
    """

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    """A clip's size, exact frame rate, length and audio; `is_sequence` for a folder or numbered images.

    `colour` and `timecode` (the label of frame 0, e.g. "01:00:00:00" or drop-frame "00:59:59;28") are what a video
    file says; an image sequence or an untagged file leaves them at their defaults. `width` and `height` are the
    size as displayed: a clip whose display matrix turns it (a phone's portrait video) is read upright, and `upright`
    names the turn ("clock", "cclock", "rot180", "hflip", "vflip", "transpose", "antitranspose"; None when stored
    upright).
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    has_audio: bool
    is_sequence: bool = False
    colour: ColourTags = field(default_factory=ColourTags)
    timecode: str | None = None
    upright: str | None = None  # how stored frames are turned to show as the file's display matrix says (probe.py)


def _name(table: dict[int, str], code: int | None) -> str | None:
    return table.get(int(code)) if code is not None else None


def tags_of(codec_context: object) -> ColourTags:
    """The tags a decoder (or a stream's parameters) reports; codes without a name (unspecified) become None."""
    return ColourTags(
        primaries=_name(PRIMARIES, getattr(codec_context, "color_primaries", None)),
        transfer=_name(TRANSFERS, getattr(codec_context, "color_trc", None)),
        matrix=_name(MATRICES, getattr(codec_context, "colorspace", None)),
        range=_name(RANGES, getattr(codec_context, "color_range", None)),
    )
