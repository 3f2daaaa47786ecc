"""`v2vz sample-clip`: a synthetic clip to try v2vz without any media.

The clip is drawn and written here, the command's own module, since nothing else in v2vz needs it (the tests and the
benchmarks import `make_sample_clip` from here). numpy, PyAV and the engine's writer load inside the functions only,
so importing the command stays light.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from v2vz.api.errors import InvalidArgument, OutputExists, V2vzError
from v2vz.api.formats import OutputFormat
from v2vz.cli.output import refuse, say

if TYPE_CHECKING:
    import numpy as np

SAMPLE_TIMECODE = "01:00:00:00"
SAMPLE_TAG = "v2vz-sample"  # the container tag that marks a sample clip: `sample-clip` writes over these only
MP4_H264 = OutputFormat(container="mp4", codec="h264", sequence=False)


def sample_clip(
    path: Annotated[Path, typer.Argument(help="Where to write the sample MP4.")] = Path("sample.mp4"),
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 24,
    width: Annotated[int, typer.Option()] = 320,
    height: Annotated[int, typer.Option()] = 192,
) -> None:
    """Write a small synthetic clip (a ball rolling over grass, a stereo tone, timecode 01:00:00:00) to try v2vz
    without any media. It writes over an earlier sample clip, never over another file."""
    try:
        if path.exists() and not is_sample_clip(path):
            raise OutputExists(f"{path} exists and is not a v2vz sample clip: give another path")
        make_sample_clip(path, frames=frames, width=width, height=height, audio=True, start_timecode=SAMPLE_TIMECODE)
    except V2vzError as exc:
        raise refuse(exc) from None
    say(f"wrote {path}: {frames} frames at {width}x{height}, 24 fps, with a stereo tone and timecode {SAMPLE_TIMECODE}")


def is_sample_clip(path: Path) -> bool:
    """A clip `make_sample_clip` wrote (its container tag says so)."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.metadata.get(SAMPLE_TAG) == "1"
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


def make_sample_clip(
    path: str | Path,
    frames: int = 24,
    width: int = 320,
    height: int = 192,
    fps: Fraction = Fraction(24),
    *,
    audio: bool = False,
    start_timecode: str | None = None,
) -> Path:
    """Write a deterministic demo clip (a ball crossing sky and ground): users can try edits without data.

    `audio` adds a stereo tone (440 Hz left, 660 Hz right) and `start_timecode` (e.g. "01:00:00:00") a timecode
    track, so the clip also shows an edit keeping its sound and timecode.
    """
    from v2vz.media.timecode import to_frames
    from v2vz_engine.media.audio import ToneAudio
    from v2vz_engine.media.writers import VideoFileWriter

    if frames < 1:
        raise InvalidArgument(f"sample clip needs at least 1 frame, got {frames}")
    if width < 8 or height < 8:
        raise InvalidArgument(f"sample clip size {width}x{height} must be at least 8x8")
    pictures = _sample_frames(frames, width, height)
    fps = Fraction(fps)
    if start_timecode is not None:
        to_frames(start_timecode, fps)  # a label that does not fit the rate fails here, in one line
    tone = [ToneAudio(Fraction(frames) / fps)] if audio else []
    tags = {SAMPLE_TAG: "1"}  # `v2vz sample-clip` may write over a sample, and over nothing else
    with VideoFileWriter(Path(path), MP4_H264, fps, start_timecode=start_timecode, audio=tone, metadata=tags) as writer:
        writer.write(pictures)
    return writer.path


def _sample_frames(frames: int, width: int, height: int) -> np.ndarray:
    """The sample's pictures as uint8 RGB (frames, height, width, 3): a red ball bouncing left to right over a sky
    and a field, the same pixels every time."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.65 * height
    sky_t = (y / horizon)[..., None]
    sky = (1 - sky_t) * np.array([40, 90, 200]) + sky_t * np.array([170, 210, 250])
    ground_t = ((y - horizon) / max(height - horizon, 1))[..., None]
    ground = (1 - ground_t) * np.array([90, 170, 70]) + ground_t * np.array([40, 100, 30])
    background = np.where((y < horizon)[..., None], sky, ground)
    radius = 0.12 * min(width, height)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        cx = radius + t * (width - 2 * radius)
        cy = horizon - radius - abs(np.sin(t * 2 * np.pi)) * 0.4 * horizon
        inside = ((x - cx) ** 2 + (y - cy) ** 2 <= radius**2)[..., None]
        shade = 1 - 0.4 * np.clip(((x - cx) + (y - cy)) / (2 * radius) + 0.5, 0, 1)[..., None]
        out[i] = np.where(inside, shade * np.array([230, 60, 40]), background).round().astype(np.uint8)
    return out
