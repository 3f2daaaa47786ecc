"""Video files with PyAV: read an exact frame range of a probed clip (writing is writers.py's).

Frame indices are 0-based positions in display order. Reads seek to a keyframe and decode forward, yet give
the same pixels as decoding from the start, so editing frames 200..207 of a long clip stays cheap. Frames become
RGB with the clip's own YUV matrix and range (colour.py), turned upright as the clip's display matrix says (a
phone's portrait clip is read as shown, not as stored). The probe (size as displayed, colour tags, start timecode)
is the torch-free `v2vz.media.probe`, whose `probe_video` and `upright_turn` are kept here for their callers.
Every error is a `v2vz.api.errors` exception with one line that names the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from v2vz.api.errors import MediaError
from v2vz.media.info import MediaInfo
from v2vz.media.probe import decode_error, open_video
from v2vz.media.probe import probe_video as probe_video  # re-exported: its callers import it from here
from v2vz.media.probe import upright_turn as upright_turn
from v2vz_engine.media.colour import decode_options

# The lossless turn of each display matrix FFmpeg's own autorotate applies (fftools' insert_filter: `transpose`,
# `hflip`, `vflip`), by the rotation it reads and the signs of the matrix; as numpy on (H, W, 3) pixels.
_TURNS = {
    "clock": lambda pixels: np.rot90(pixels, -1),
    "cclock": lambda pixels: np.rot90(pixels, 1),
    "rot180": lambda pixels: pixels[::-1, ::-1],
    "hflip": lambda pixels: pixels[:, ::-1],
    "vflip": lambda pixels: pixels[::-1],
    "transpose": lambda pixels: pixels.transpose(1, 0, 2),
    "antitranspose": lambda pixels: np.rot90(pixels, -1)[::-1],
}


def turn_upright(pixels: np.ndarray, turn: str | None) -> np.ndarray:
    """(H, W, 3) stored pixels as displayed: the model edits, and every output holds, what a player shows."""
    return pixels if turn is None else np.ascontiguousarray(_TURNS[turn](pixels))


def _rgb(frame: av.VideoFrame, options: dict[str, object]) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", **options)


def _decode_sequential(path: Path, start: int, count: int, options: dict[str, object]) -> Iterator[np.ndarray]:
    """Decode from the very first frame, counting frames: the reference meaning of a frame index."""
    with open_video(path) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index >= start + count:
                break
            if index >= start:
                yield _rgb(frame, options)


def _decode_seeking(
    path: Path, start: int, count: int, fps: Fraction, options: dict[str, object]
) -> Iterator[np.ndarray]:
    """Seek to a keyframe before `start` and decode forward; stops early where timestamps cannot be trusted.

    It yields only frames whose index is the next one wanted, so the caller can go on from where it stopped.
    MP4 seeks on decode timestamps, which run ahead of display ones with B-frames, so a seek can land on
    a keyframe just after `start`: then seek again further back, until that would mean the first frame.
    """
    with open_video(path) as container:
        stream = container.streams.video[0]
        time_base, first_pts = stream.time_base, stream.start_time or 0
        if not time_base:
            return
        back = 0
        while start - back > 0:
            container.seek(first_pts + int((start - back) / fps / time_base), backward=True, stream=stream)
            landed, wanted = False, start
            for frame in container.decode(stream):
                if frame.pts is None:
                    return
                index = round((frame.pts - first_pts) * time_base * fps)
                if not landed:
                    if index > start:
                        break  # landed after start: seek further back
                    landed = True
                if index < wanted:
                    continue
                if index != wanted:
                    return  # a gap or a repeat: the timestamps do not count frames
                yield _rgb(frame, options)
                wanted += 1
                if wanted == start + count:
                    return
            if landed:
                return  # the stream ended early
            back = max(8, back * 4)


def iter_video_frames(info: MediaInfo, start: int, count: int) -> Iterator[np.ndarray]:
    """Frames start..start+count-1 of a probed video (range already checked), one at a time as uint8 RGB (H, W, 3),
    converted from YUV with the clip's own matrix and range (`info.colour`; FFmpeg's BT.601 default if untagged)
    and turned upright as its display matrix says (`info.upright`).

    One container stays open while the caller consumes frames, so a long range is decoded once and never held in
    memory as a whole.
    """
    done = 0
    options = decode_options(info.colour)
    try:
        for pixels in _decode_seeking(info.path, start, count, info.fps, options):
            yield turn_upright(pixels, info.upright)
            done += 1
        if done < count:  # not seekable, or untrustworthy timestamps: count frames from the start
            for pixels in _decode_sequential(info.path, start + done, count - done, options):
                yield turn_upright(pixels, info.upright)
                done += 1
    except av.FFmpegError as error:
        raise decode_error(info.path, error) from error
    if done < count:
        raise MediaError(
            f"{info.path} says it has {info.frame_count} frames but frames {start}..{start + count - 1} could not "
            "all be decoded; the file looks truncated, export it again"
        )
