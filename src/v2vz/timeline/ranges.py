"""OTIO's rational times as frames of a media file, exactly.

OTIO keeps a time as a float value at a float rate (30000/1001 is 29.97002997...). A job needs whole frames of the
media at its own exact rate (a Fraction from PyAV), so every conversion here is done in Fractions: a rate is first
matched to the exact rate it stands for (the media's own when they agree, 30000/1001 for 29.97, 24 for 24.0), and
a value must land on a whole frame of the media, or the clip is refused with the reason.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import opentimelineio as otio

from v2vz.timeline.media import label_frames

RATE_TOLERANCE = Fraction(1, 20000)  # relative: 29.97 and 29.97002997 both stand for 30000/1001, but 30 does not
FRAME_TOLERANCE = Fraction(1, 1000)  # of a frame: the float noise of adapters' arithmetic, never a real offset
NTSC_BASES = (24, 30, 48, 60, 96, 120)  # n * 1000/1001 rates


class RangeProblem(Exception):
    """A time that is not a whole frame of the media, or a range outside it: the message is the reason."""


@functools.lru_cache(maxsize=256)  # a timeline has a few rates and asks for each of them for every clip
def exact_rate(rate: float, media_fps: Fraction | None = None) -> Fraction:
    """The exact rate an OTIO rate stands for: `media_fps` when they agree, else a whole rate, an NTSC rate
    (n * 1000/1001) or the nearest fraction with a small denominator."""
    if not rate or not math.isfinite(rate) or rate <= 0:
        raise RangeProblem(f"its time has no frame rate ({rate})")
    given = Fraction(rate)
    candidates = [Fraction(media_fps)] if media_fps else []
    candidates += [Fraction(round(rate))] if round(rate) > 0 else []
    candidates += [Fraction(base * 1000, 1001) for base in NTSC_BASES]
    for candidate in candidates:
        if abs(given - candidate) <= candidate * RATE_TOLERANCE:
            return candidate
    return given.limit_denominator(1001)


def frames_at(time: otio.opentime.RationalTime, fps: Fraction) -> Fraction:
    """`time` as a (possibly fractional) number of frames at `fps`."""
    return Fraction(time.value) * Fraction(fps) / exact_rate(time.rate, Fraction(fps))


def whole_frames(time: otio.opentime.RationalTime, fps: Fraction, what: str) -> int:
    """`time` as whole frames at `fps`; RangeProblem naming `what` when it falls between two frames."""
    frames = frames_at(time, fps)
    nearest = round(frames)
    if abs(frames - nearest) > FRAME_TOLERANCE:
        raise RangeProblem(
            f"its {what} falls between two frames of its media ({float(frames):.3f} frames at {rate_text(fps)} fps); "
            "v2vz edits whole frames"
        )
    return nearest


def time_of(frames: int, fps: Fraction, like: otio.opentime.RationalTime) -> otio.opentime.RationalTime:
    """`frames` frames at `fps` as a RationalTime at the rate of `like` (its value exact when the rates agree)."""
    rate = exact_rate(like.rate, Fraction(fps))
    return otio.opentime.RationalTime(float(Fraction(frames) * rate / Fraction(fps)), like.rate)


def rate_text(fps: Fraction) -> str:
    """24, 25, 30000/1001: how a rate is written in messages."""
    fps = Fraction(fps)
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def timecode_frames(label: str, fps: Fraction) -> int:
    """A start timecode label (`01:00:00:00`, drop-frame `00:59:59;28` or `00:59:59.28`) as a frame number at `fps`,
    counted as the engine counts it (media.label_frames: OTIO's parser reads `.` as non-drop, 108 frames off at
    01:00:00 in 29.97)."""
    frames = label_frames(label, fps)
    if frames is None:
        raise RangeProblem(f"its media's start timecode {label!r} does not exist at {rate_text(fps)} fps")
    return frames


@dataclass(frozen=True)
class MediaRange:
    """Frames `start` .. `start + frames - 1` of a media file, 0-based from its first frame: what a job edits."""

    start: int
    frames: int

    @property
    def last(self) -> int:
        return self.start + self.frames - 1


def media_range(
    source_range: otio.opentime.TimeRange,
    media_start: otio.opentime.RationalTime | None,
    fps: Fraction,
    media_frames: int,
) -> MediaRange:
    """The frames of the media a clip's `source_range` covers.

    media_start: the time of the media's first frame on the same clock as `source_range` (the media reference's
    available range, else its start timecode; None: 0). RangeProblem when a bound is not a whole frame or the
    range is empty or outside the media's `media_frames` frames.
    """
    offset = 0 if media_start is None else whole_frames(media_start, fps, "media's start")
    start = whole_frames(source_range.start_time, fps, "start") - offset
    count = whole_frames(source_range.duration, fps, "duration")
    if count < 1:
        raise RangeProblem("it is empty (no frame of its media)")
    wanted = MediaRange(start, count)
    if start < 0 or wanted.last >= media_frames:
        raise RangeProblem(
            f"it uses frames {start}..{wanted.last} of its media, which has {media_frames} "
            f"(0..{media_frames - 1})" + (" counted from its start timecode" if offset else "")
        )
    return wanted
