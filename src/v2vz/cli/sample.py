"""`v2vz sample-clip`: a synthetic clip to try v2vz without any media."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.errors import OutputExists, V2vzError
from v2vz.cli.output import refuse, say

SAMPLE_TIMECODE = "01:00:00:00"


def sample_clip(
    path: Annotated[Path, typer.Argument(help="Where to write the sample MP4.")] = Path("sample.mp4"),
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 24,
    width: Annotated[int, typer.Option()] = 320,
    height: Annotated[int, typer.Option()] = 192,
) -> None:
    """Write a small synthetic clip (a ball rolling over grass, a stereo tone, timecode 01:00:00:00) to try v2vz
    without any media. It writes over an earlier sample clip, never over another file."""
    from v2vz_engine.media.video import is_sample_clip, make_sample_clip

    try:
        if path.exists() and not is_sample_clip(path):
            raise OutputExists(f"{path} exists and is not a v2vz sample clip: give another path")
        make_sample_clip(path, frames=frames, width=width, height=height, audio=True, start_timecode=SAMPLE_TIMECODE)
    except V2vzError as exc:
        raise refuse(exc) from None
    say(f"wrote {path}: {frames} frames at {width}x{height}, 24 fps, with a stereo tone and timecode {SAMPLE_TIMECODE}")
