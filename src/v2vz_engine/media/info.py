"""What the engine knows about a source before reading its frames: `MediaInfo` and `ColourTags`, which live in the
torch-free `v2vz.media.info` (the timeline probes with it too); kept here so the engine's callers import them as
before."""

from __future__ import annotations

from v2vz.media.info import ColourTags, MediaInfo

__all__ = ["ColourTags", "MediaInfo"]
