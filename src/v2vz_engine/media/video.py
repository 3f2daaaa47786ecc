"""Video files with PyAV: probe a clip, read an exact frame range, and write an H.264 MP4 atomically.

Frame indices are 0-based positions in display order. Reads seek to a keyframe and decode forward, yet give
the same pixels as decoding from the start, so editing frames 200..207 of a long clip stays cheap. Frames become
RGB with the clip's own YUV matrix and range (colour.py), turned upright as the clip's display matrix says (a
phone's portrait clip is read as shown, not as stored); a probe also reports its colour tags and start timecode.
Writing is writers.py's: `Mp4Writer` and `write_mp4` are its H.264 MP4 without a source, kept for their callers.
Every error is a `v2vz.api.errors` exception with one line that names the file.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from v2vz.api.errors import InvalidArgument, MediaError, MediaNotFound
from v2vz.api.formats import OutputFormat
from v2vz_engine.media.audio import ToneAudio
from v2vz_engine.media.colour import decode_options, tags_of
from v2vz_engine.media.info import MediaInfo
from v2vz_engine.media.timecode import to_frames
from v2vz_engine.media.writers import VideoFileWriter, check_frames

log = logging.getLogger(__name__)

MP4_H264 = OutputFormat(container="mp4", codec="h264", sequence=False)


def _ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's own reason without the errno and path noise, on one line."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


@contextmanager
def _open(path: Path) -> Iterator[av.container.InputContainer]:
    """Open a clip for reading, turning missing and undecodable files into errors a person can act on."""
    if not path.exists():
        raise MediaNotFound(f"{path} does not exist; check the path")
    if not path.is_file():
        raise MediaError(f"{path} is not a file; give the path of a video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaError(
            f"{path} cannot be read as video ({_ffmpeg_reason(error)}); export it again as MP4 or MOV"
        ) from error
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream; give a file that contains video")
        container.streams.video[0].thread_type = "AUTO"
        yield container
    finally:
        container.close()


def _decode_error(path: Path, error: BaseException) -> MediaError:
    return MediaError(f"{path} is damaged and cannot be decoded ({_ffmpeg_reason(error)}); export it again")


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
SIDEWAYS = frozenset({"clock", "cclock", "transpose", "antitranspose"})  # these swap width and height


def upright_turn(matrix: tuple[int, ...] | None, path: Path) -> str | None:
    """The turn (a `_TURNS` key) that shows stored frames as a display matrix says, None for none; FFmpeg's rules.

    MediaError for a matrix that turns by an angle other than a multiple of 90 degrees: no lossless turn shows it.
    """
    if matrix is None:
        return None
    scale_x, scale_y = math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4])
    if not scale_x or not scale_y:
        return None  # a degenerate matrix: FFmpeg ignores it too
    theta = -round(-math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x)))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return "transpose" if matrix[3] > 0 else "clock"
    if abs(theta - 270) < 1:
        return "antitranspose" if matrix[3] < 0 else "cclock"
    if abs(theta - 180) < 1:
        flips = (matrix[0] < 0, matrix[4] < 0)
        return {(True, True): "rot180", (True, False): "hflip", (False, True): "vflip"}.get(flips)
    if abs(theta) < 1:
        return "vflip" if matrix[4] < 0 else None
    raise MediaError(
        f"{path} is displayed turned by {theta:.0f} degrees, which v2vz cannot read upright without resampling; "
        "export it upright (or turned by a multiple of 90 degrees)"
    )


def turn_upright(pixels: np.ndarray, turn: str | None) -> np.ndarray:
    """(H, W, 3) stored pixels as displayed: the model edits, and every output holds, what a player shows."""
    return pixels if turn is None else np.ascontiguousarray(_TURNS[turn](pixels))


def _display_matrix(path: Path) -> tuple[int, ...] | None:
    """The video stream's display matrix (9 int32, FFmpeg's layout), as its first decoded frame carries it.

    A container of its own, so the probe's frame count never starts from a seek."""
    with _open(path) as container:
        try:
            frame = next(iter(container.decode(container.streams.video[0])), None)
        except av.FFmpegError as error:
            raise _decode_error(path, error) from error
        for data in frame.side_data if frame is not None else ():
            if data.type.name == "DISPLAYMATRIX" and len(bytes(data)) >= 36:
                return struct.unpack("=9i", bytes(data)[:36])
    return None


def probe_video(path: Path) -> MediaInfo:
    """Describe a video file: size as displayed, exact frame rate (a Fraction, so 30000/1001 stays exact), frames
    and audio."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        if not fps or fps <= 0:
            raise MediaError(f"{path} does not say its frame rate; export it again at a constant frame rate")
        turn = upright_turn(_display_matrix(path), path)
        width, height = (stream.height, stream.width) if turn in SIDEWAYS else (stream.width, stream.height)
        frame_count = stream.frames
        if frame_count <= 0:  # some containers (MKV, WebM, raw streams) do not store it: count
            try:
                frame_count = sum(1 for _ in container.decode(stream))
            except av.FFmpegError as error:
                raise _decode_error(path, error) from error
        if frame_count <= 0:
            raise MediaError(f"{path} contains no decodable video frames; export it again")
        return MediaInfo(
            path=path,
            width=width,
            height=height,
            fps=Fraction(fps),
            frame_count=frame_count,
            has_audio=bool(container.streams.audio),
            colour=tags_of(stream.codec_context),
            timecode=_start_timecode(container, Fraction(fps)),
            upright=turn,
        )


def _start_timecode(container: av.container.InputContainer, fps: Fraction) -> str | None:
    """The label of frame 0: the video stream's `timecode` tag, a timecode (tmcd) track's, or the container's, in
    any case (Matroska's is `TIMECODE`).

    A label that does not fit the frame rate (drop-frame at 25 fps, frame 30 of a 30 fps second) is ignored with a
    warning: a wrong timecode on an output would be worse than none.
    """
    streams = [container.streams.video[0], *(s for s in container.streams if s.type != "video")]
    for metadata in (*(s.metadata for s in streams), container.metadata):
        # Matroska's tag is TIMECODE (its tags are upper case), MOV/MP4's and MXF's timecode
        label = next((value for key, value in metadata.items() if key.lower() == "timecode" and value), None)
        if not label:
            continue
        try:
            to_frames(label, fps)
        except InvalidArgument as error:
            log.warning("%s: timecode %r ignored (%s)", container.name, label, error)
            return None
        return label.strip()
    return None


def _rgb(frame: av.VideoFrame, options: dict[str, object]) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", **options)


def _decode_sequential(path: Path, start: int, count: int, options: dict[str, object]) -> Iterator[np.ndarray]:
    """Decode from the very first frame, counting frames: the reference meaning of a frame index."""
    with _open(path) as container:
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
    with _open(path) as container:
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
        raise _decode_error(info.path, error) from error
    if done < count:
        raise MediaError(
            f"{info.path} says it has {info.frame_count} frames but frames {start}..{start + count - 1} could not "
            "all be decoded; the file looks truncated, export it again"
        )


class Mp4Writer(VideoFileWriter):
    """H.264 MP4 written a few frames at a time, at exactly `fps` and the frames' own size, without audio.

    A long edit never sits in memory whole, and readers never see a partial file: frames go to a hidden temporary name
    beside the target, which replaces it only when `close()` succeeds; `abort()` (or leaving a `with` block on an
    exception) deletes it. writers.open_writer is the same with a source's audio, timecode and colour.
    """

    def __init__(self, path: str | Path, fps: Fraction) -> None:
        super().__init__(Path(path), MP4_H264, Fraction(fps))

    def close(self) -> Path:  # type: ignore[override]  # the older API returns the one file
        """Flush the encoder and move the finished file into place."""
        super().close()
        return self.path

    def __enter__(self) -> Mp4Writer:
        return self


def write_mp4(frames: np.ndarray, path: str | Path, fps: Fraction) -> Path:
    """Write H.264 MP4 at exactly `fps` and the frames' own size; readers never see a partial file."""
    check_frames(frames)
    with Mp4Writer(path, fps) as writer:
        writer.write(frames)
    return writer.path


SAMPLE_TAG = "v2vz-sample"


def is_sample_clip(path: Path) -> bool:
    """A clip `make_sample_clip` wrote (its container tag says so)."""
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
    if frames < 1:
        raise InvalidArgument(f"sample clip needs at least 1 frame, got {frames}")
    if width < 8 or height < 8:
        raise InvalidArgument(f"sample clip size {width}x{height} must be at least 8x8")
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
    fps = Fraction(fps)
    if start_timecode is not None:
        to_frames(start_timecode, fps)  # a label that does not fit the rate fails here, in one line
    tone = [ToneAudio(Fraction(frames) / fps)] if audio else []
    tags = {SAMPLE_TAG: "1"}  # `v2vz sample-clip` may write over a sample, and over nothing else
    with VideoFileWriter(Path(path), MP4_H264, fps, start_timecode=start_timecode, audio=tone, metadata=tags) as writer:
        writer.write(out)
    return writer.path
