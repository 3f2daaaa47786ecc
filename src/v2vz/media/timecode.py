"""SMPTE timecode arithmetic: parse a label, turn it into a frame number and back, drop-frame included.

Pure functions, no PyAV: an edit of frames 120.. of a clip that starts at 01:00:00:00 must carry the timecode of
frame 120, so an editor conforms the take onto the source's own timeline. A timecode counts frames at its nominal
rate (30 for 29.97, 24 for 23.976); drop-frame (29.97 and 59.94 only, written with `;` or `.` before the frames)
skips the labels ;00 and ;01 (;00..;03 at 59.94) of every minute except each tenth, so the label tracks the clock.
A day wraps at 24 hours, as a clock does; a label already past 24 hours (FFmpeg writes and reads up to 99) is not a
time of day, and counts on to 99:59:59 instead of jumping back a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from v2vz.api.errors import InvalidArgument

_LABEL = re.compile(r"^(\d{1,2})[:;.](\d{2})[:;.](\d{2})([:;.])(\d{2,3})$")
_DAY_HOURS = 24
_MOST_HOURS = 100  # two digits: where a label that is past a day wraps


@dataclass(frozen=True)
class Timecode:
    """A parsed label: hours, minutes, seconds, frames, and whether it counts drop-frame."""

    hours: int
    minutes: int
    seconds: int
    frames: int
    drop: bool

    def __str__(self) -> str:
        return f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}{';' if self.drop else ':'}{self.frames:02d}"


def nominal_rate(fps: Fraction) -> int:
    """The frames a timecode second counts: 30 for 30000/1001, 24 for 24000/1001, 25 for 25."""
    fps = Fraction(fps)
    if fps <= 0:
        raise InvalidArgument(f"frame rate {fps} must be positive")
    return max(1, round(fps))


def _dropped_per_minute(fps: Fraction) -> int:
    """Labels skipped per minute in drop-frame: 2 at 29.97, 4 at 59.94; raises where drop-frame has no meaning."""
    rate = nominal_rate(fps)
    if Fraction(fps) != Fraction(rate * 1000, 1001) or rate % 30:
        raise InvalidArgument(f"drop-frame timecode exists at 30000/1001 and 60000/1001 fps only, not {fps}")
    return rate // 15


def parse(label: str) -> Timecode:
    """`HH:MM:SS:FF` (non-drop) or `HH:MM:SS;FF` / `HH:MM:SS.FF` (drop-frame) as a Timecode."""
    match = _LABEL.match(label.strip())
    if match is None:
        raise InvalidArgument(f"timecode {label!r} is not HH:MM:SS:FF (or HH:MM:SS;FF for drop-frame)")
    hours, minutes, seconds, separator, frames = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise InvalidArgument(f"timecode {label!r} has minutes or seconds above 59")
    return Timecode(int(hours), int(minutes), int(seconds), int(frames), separator in ";.")


def to_frames(label: str | Timecode, fps: Fraction) -> int:
    """The frame number a label stands for, counted from 00:00:00:00 at `fps`."""
    code = parse(label) if isinstance(label, str) else label
    rate = nominal_rate(fps)
    if code.frames >= rate:
        raise InvalidArgument(f"timecode {code} counts frame {code.frames}, but a second has {rate} at {fps} fps")
    total = ((code.hours * 60 + code.minutes) * 60 + code.seconds) * rate + code.frames
    if not code.drop:
        return total
    drop = _dropped_per_minute(fps)
    if code.seconds == 0 and code.frames < drop and code.minutes % 10:
        raise InvalidArgument(f"timecode {code} does not exist in drop-frame: each minute but every tenth skips it")
    minutes = code.hours * 60 + code.minutes
    return total - drop * (minutes - minutes // 10)


def from_frames(frame: int, fps: Fraction, drop: bool = False, wrap_hours: int = _DAY_HOURS) -> Timecode:
    """The label of frame number `frame` (from 00:00:00:00) at `fps`; past `wrap_hours` (a day) it wraps, as a clock
    does."""
    if frame < 0:
        raise InvalidArgument(f"frame number {frame} is negative")
    rate = nominal_rate(fps)
    if drop:
        skip = _dropped_per_minute(fps)
        per_ten_minutes = rate * 600 - 9 * skip
        per_minute = rate * 60 - skip
        tens, rest = divmod(frame, per_ten_minutes)
        frame += 9 * skip * tens + (skip * ((rest - skip) // per_minute) if rest > skip else 0)
    frame %= rate * 3600 * wrap_hours
    seconds, frames = divmod(frame, rate)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return Timecode(hours, minutes, seconds, frames, drop)


def add(label: str, frames: int, fps: Fraction) -> str:
    """`label` moved on by `frames` frames at `fps`, in the same counting (drop-frame stays drop-frame; a label
    past 24 hours stays past them rather than wrapping to the next day's time)."""
    code = parse(label)
    wrap_hours = _DAY_HOURS if code.hours < _DAY_HOURS else _MOST_HOURS
    return str(from_frames(to_frames(code, fps) + frames, fps, code.drop, wrap_hours))
