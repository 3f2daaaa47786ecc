"""What the engine knows about a source before reading its frames: one description for videos and image sequences."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class MediaInfo:
    """A clip's size, exact frame rate, length and audio; `is_sequence` for a folder or numbered images."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    has_audio: bool
    is_sequence: bool = False
