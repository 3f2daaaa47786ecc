"""What a source is, read with PyAV (and Pillow for image sequences) alone: size as displayed, exact frame rate,
frame count, audio, colour tags, start timecode and the display matrix's turn.

One probe for every layer: the engine (`v2vz_engine.media.probe`, re-exported) and `v2vz timeline` both call it, so
a range that fits when a timeline plans its jobs fits the daemon's check at submit, and both count a clip's frames
from the same first frame. No torch here (tests/test_layers.py checks it): the timeline plans in milliseconds.
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

from v2vz.api.errors import InvalidArgument, MediaError, MediaNotFound
from v2vz.media import image_sequence
from v2vz.media.info import MediaInfo, tags_of
from v2vz.media.timecode import to_frames

log = logging.getLogger(__name__)

DEFAULT_SEQUENCE_FPS = Fraction(24)  # an image sequence carries no frame rate; a job can give its own
SIDEWAYS = frozenset({"clock", "cclock", "transpose", "antitranspose"})  # these turns swap width and height


def ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's own reason without the errno and path noise, on one line."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


@contextmanager
def open_video(path: Path) -> Iterator[av.container.InputContainer]:
    """Open a clip for reading, turning missing and undecodable files into errors a person can act on."""
    if not path.exists():
        raise MediaNotFound(f"{path} does not exist; check the path")
    if not path.is_file():
        raise MediaError(f"{path} is not a file; give the path of a video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaError(
            f"{path} cannot be read as video ({ffmpeg_reason(error)}); export it again as MP4 or MOV"
        ) from error
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream; give a file that contains video")
        container.streams.video[0].thread_type = "AUTO"
        yield container
    finally:
        container.close()


def decode_error(path: Path, error: BaseException) -> MediaError:
    return MediaError(f"{path} is damaged and cannot be decoded ({ffmpeg_reason(error)}); export it again")


def is_image_sequence(path: str | Path) -> bool:
    """A folder of images or an image file (a numbered sequence from that file on, or a still)."""
    return image_sequence.is_image_source(Path(path).expanduser())


def probe(path: str | Path) -> MediaInfo:
    """Describe a source: size, exact frame rate (a Fraction, so 30000/1001 stays exact), frames and audio.

    An image sequence (see image_sequence.py) is described too, at DEFAULT_SEQUENCE_FPS and without audio.
    """
    path = Path(path).expanduser()
    if path.exists() and is_image_sequence(path):
        files, width, height = image_sequence.probe_sequence(path)
        return MediaInfo(path, width, height, DEFAULT_SEQUENCE_FPS, len(files), has_audio=False, is_sequence=True)
    return probe_video(path)


def upright_turn(matrix: tuple[int, ...] | None, path: Path) -> str | None:
    """The turn (a key of v2vz_engine.media.video's `_TURNS`) that shows stored frames as a display matrix says,
    None for none; FFmpeg's rules.

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


def _display_matrix(path: Path) -> tuple[int, ...] | None:
    """The video stream's display matrix (9 int32, FFmpeg's layout), as its first decoded frame carries it.

    A container of its own, so the probe's frame count never starts from a seek."""
    with open_video(path) as container:
        try:
            frame = next(iter(container.decode(container.streams.video[0])), None)
        except av.FFmpegError as error:
            raise decode_error(path, error) from error
        for data in frame.side_data if frame is not None else ():
            if data.type.name == "DISPLAYMATRIX" and len(bytes(data)) >= 36:
                return struct.unpack("=9i", bytes(data)[:36])
    return None


def probe_video(path: Path) -> MediaInfo:
    """Describe a video file: size as displayed, exact frame rate (a Fraction, so 30000/1001 stays exact), frames
    and audio."""
    with open_video(path) as container:
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
                raise decode_error(path, error) from error
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
