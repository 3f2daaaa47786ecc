"""SMPTE timecode arithmetic, drop-frame included: the torch-free `v2vz.media.timecode` (the timeline counts a
clip's start timecode with it too), kept here so the engine's callers import it as before."""

from __future__ import annotations

from v2vz.media.timecode import Timecode, add, from_frames, nominal_rate, parse, to_frames

__all__ = ["Timecode", "add", "from_frames", "nominal_rate", "parse", "to_frames"]
