"""What the engine knows about a source before reading its frames: one description for videos and image sequences."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class ColourTags:
    """A video's colour description as its file tags it, by FFmpeg's names; None where the file says nothing.

    primaries and transfer (e.g. "bt709") describe the RGB; matrix ("bt709", "smpte170m", "bt2020nc") and range
    ("limited" or "full") say how YUV samples encode it. See colour.py for what is done with each.
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
    upright: str | None = None  # how stored frames are turned to show as the file's display matrix says (video.py)
