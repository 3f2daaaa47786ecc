"""Editor-grade outputs: a video file (MP4, MOV) or numbered frame files (EXR, PNG, TIFF), written a window at a time.

`open_writer` turns an `OutputFormat` (v2vz.api.formats) into a `ClipWriter`. Frames arrive a few at a time as RGB,
uint8 or float32 in [0, 1]; float frames keep their precision up to the codec's depth (10-bit ProRes and H.265,
16-bit PNG and TIFF, half-float EXR), never rounded to 8 bits first. Beside the picture an output keeps what an
editor needs to conform it: the source's audio for exactly the edited range (audio.py), its timecode moved on to the
range's first frame (timecode.py), its colour tags with the matrix and range they imply (colour.py), and the caller's
metadata (the take's record) as container tags.

Nothing half-written is ever seen under a final name: a video goes to a hidden temporary beside the target that
replaces it on `close()`; each frame file is written atomically; `abort()` removes the temporary and the frames
this writer wrote. Every failure is a one-line `v2vz.api.errors` exception.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

import av
import numpy as np
from av.video.reformatter import Interpolation

from v2vz.api.errors import InvalidArgument, V2vzError
from v2vz.api.files import atomic_path, replace_with, temporary_beside
from v2vz.api.formats import OutputFormat, check_size, frame_path, frame_pattern
from v2vz.api.takes import hashed_pattern
from v2vz_engine.media.audio import AudioFeed, TrimmedAudio, audio_tracks, ffmpeg_reason, pcm_codec
from v2vz_engine.media.colour import encode_options, output_tags, tag, to_linear
from v2vz_engine.media.info import ColourTags, MediaInfo
from v2vz_engine.media.outputs import write_error
from v2vz_engine.media.timecode import add as add_frames

log = logging.getLogger(__name__)

_AAC_BITS_PER_CHANNEL = 96_000
_FILE_ERRNOS = frozenset(
    {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EIO, errno.EACCES, errno.EROFS}
)
_SCALE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
_MOST_REORDER_FRAMES = 64  # B-frame reordering delays decoding by a few frames (x265 at most 16 B-frames), never more


@dataclass(frozen=True)
class VideoCodec:
    """How one `OutputFormat.codec` is encoded: the FFmpeg encoder, its pixel format (and the one for odd sizes
    where the first halves the chroma both ways), its options, and the sample tag players expect."""

    encoder: str
    pix_fmt: str
    odd_pix_fmt: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    codec_tag: str | None = None


VIDEO_CODECS: dict[str, VideoCodec] = {
    # 4:2:0 halves the chroma planes, so x264/x265 refuse odd sizes; 4:4:4 keeps the exact source size.
    "h264": VideoCodec("libx264", "yuv420p", "yuv444p", {"crf": "18"}),
    "h265": VideoCodec(
        "libx265", "yuv420p10le", "yuv444p10le", {"crf": "18", "x265-params": "log-level=error"}, "hvc1"
    ),
    "prores_422hq": VideoCodec("prores_ks", "yuv422p10le", options={"profile": "hq"}),
    "prores_4444": VideoCodec("prores_ks", "yuv444p10le", options={"profile": "4444"}),
    "dnxhr_hq": VideoCodec("dnxhd", "yuv422p", options={"profile": "dnxhr_hq"}),
}


@dataclass(frozen=True)
class FrameCodec:
    """How one frame-sequence codec is encoded: the FFmpeg image encoder, its 16-bit or float pixel format, options."""

    encoder: str
    pix_fmt: str
    options: Mapping[str, str] = field(default_factory=dict)


FRAME_CODECS: dict[str, FrameCodec] = {
    "exr_half": FrameCodec("exr", "gbrpf32le", {"format": "half", "compression": "zip1"}),
    "png16": FrameCodec("png", "rgb48be"),
    "tiff16": FrameCodec("tiff", "rgb48le", {"compression_algo": "deflate"}),
}


def check_frames(frames: np.ndarray) -> None:
    """InvalidArgument unless `frames` is (F, H, W, 3) RGB with F >= 1, uint8 or floating point."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        shape = tuple(getattr(frames, "shape", ()))
        raise InvalidArgument(f"frames must be shaped (frames, height, width, 3), got {shape}")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise InvalidArgument(f"frames must be uint8 or float32 in [0, 1], got {frames.dtype}")


def _sixteen_bit(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB as uint16 0..65535: uint8 exactly (x 257), floats rounded from [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * 257
    values = np.nan_to_num(pixels.astype(np.float32, copy=False), nan=0.0)
    return np.round(np.clip(values, 0.0, 1.0) * 65535).astype(np.uint16)


def _unit_float(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB as float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255
    return np.clip(np.nan_to_num(pixels.astype(np.float32, copy=False), nan=0.0), 0.0, 1.0)


def rgb_frame(pixels: np.ndarray) -> av.VideoFrame:
    """One RGB picture as a frame: rgb24 for uint8, 16-bit rgb48 for floats, so they keep their precision."""
    if pixels.dtype == np.uint8:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    return av.VideoFrame.from_ndarray(_sixteen_bit(pixels), format="rgb48le")


def _encode_error(path: Path, label: str, error: BaseException) -> BaseException:
    """The one-line error for a failure while writing: an OSError, or FFmpeg's error for a file-system errno, is the
    output's write_error; another FFmpeg error means the encoder refused these frames. Anything else (our own
    errors, a cancel, Ctrl-C) is itself."""
    if isinstance(error, V2vzError) or not isinstance(error, OSError | av.FFmpegError):
        return error
    if isinstance(error, OSError) or getattr(error, "errno", None) in _FILE_ERRNOS:
        return write_error(path, error)
    return InvalidArgument(f"cannot write {path} as {label} ({ffmpeg_reason(error)})")


def _reraise(error: BaseException, path: Path, label: str) -> NoReturn:
    converted = _encode_error(path, label, error)
    if converted is error:
        raise error
    raise converted from error


class ClipWriter:
    """An output written a few frames at a time; a context manager that closes on success and aborts on an error.

    `write` returns the frame files it wrote (sequences) or []; `close` every final file (the video, or the frames
    and a WAV per kept audio stream); `abort` leaves nothing behind, the target as it was before.
    """

    def __init__(self, path: Path, fmt: OutputFormat, fps: Fraction) -> None:
        fps = Fraction(fps)
        if fps <= 0:
            raise InvalidArgument(f"frame rate {fps} must be positive")
        self.path = Path(path).expanduser()
        self.format = fmt
        self.fps = fps
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._closed: list[Path] | None = None  # the final files, once closed: a second close returns them

    def _check_size(self, frames: np.ndarray) -> None:
        check_frames(frames)
        height, width = frames.shape[1:3]
        if self._size is not None and (width, height) != self._size:
            first = f"{self._size[0]}x{self._size[1]}"
            raise InvalidArgument(f"frames of {width}x{height} cannot follow {first} ones in {self.path}")

    def write(self, frames: np.ndarray) -> list[Path]:
        """Append (F, H, W, 3) RGB frames; every call has the first call's size."""
        raise NotImplementedError

    def close(self) -> list[Path]:
        """Finish the output and put it in place; returns every final file."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop what was written; the target is left as it was."""
        raise NotImplementedError

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class VideoFileWriter(ClipWriter):
    """MP4 or MOV: one video stream, the audio feeds (AAC in MP4, PCM in MOV), timecode, colour tags, metadata.

    The container opens at once when the size is known (so an impossible size fails before any work), else on the
    first frames. Audio is encoded as far as the video has come after every write, so the two interleave.
    """

    def __init__(
        self,
        path: Path,
        fmt: OutputFormat,
        fps: Fraction,
        *,
        size: tuple[int, int] | None = None,
        colour_tags: ColourTags | None = None,
        start_timecode: str | None = None,
        metadata: Mapping[str, str] | None = None,
        audio: Sequence[AudioFeed] = (),
    ) -> None:
        super().__init__(path, fmt, fps)
        if fmt.sequence or fmt.codec not in VIDEO_CODECS:
            raise InvalidArgument(f"{fmt.label} is not a video file format")
        self.codec = VIDEO_CODECS[fmt.codec]
        self.colour = output_tags(colour_tags or ColourTags(), fmt.codec)
        self.timecode = start_timecode
        self.metadata = dict(metadata or {})
        self.audio = list(audio)
        self._temp: Path | None = None
        self._container = None
        self._stream = None
        self._audio_streams: list = []
        self._last_dts: int | None = None
        if size is not None:
            self._check_codec_size(*size)
            self._start(*size)

    def _check_codec_size(self, width: int, height: int) -> None:
        check_codec_size(self.format, width, height, self.path)

    def _start(self, width: int, height: int) -> None:
        self._size = (width, height)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._temp = temporary_beside(self.path, f".part.{self.format.container}")
            options = {"movflags": "use_metadata_tags"} if self.metadata else {}
            self._container = av.open(str(self._temp), mode="w", format=self.format.container, options=options)
            for key, value in self.metadata.items():
                self._container.metadata[key] = value
            if self.timecode:
                self._container.metadata["timecode"] = self.timecode  # the muxer writes it as a tmcd track
            self._stream = self._add_video(width, height)
            self._audio_streams = [self._add_audio(feed) for feed in self.audio]
        except BaseException as error:
            self.abort()
            _reraise(error, self.path, self.format.label)

    def _add_video(self, width: int, height: int):
        odd = width % 2 or height % 2
        stream = self._container.add_stream(self.codec.encoder, rate=self.fps, options=dict(self.codec.options))
        stream.width, stream.height = width, height
        stream.pix_fmt = self.codec.odd_pix_fmt if odd and self.codec.odd_pix_fmt else self.codec.pix_fmt
        stream.codec_context.time_base = 1 / self.fps
        tag(stream.codec_context, self.colour)
        if self.codec.codec_tag:
            stream.codec_tag = self.codec.codec_tag
        return stream

    def _add_audio(self, feed: AudioFeed):
        if self.format.container == "mp4":
            stream = self._container.add_stream("aac", rate=feed.rate, layout=feed.layout)
            stream.bit_rate = min(512_000, _AAC_BITS_PER_CHANNEL * len(stream.layout.channels))
        else:
            stream = self._container.add_stream(pcm_codec(feed.codec), rate=feed.rate, layout=feed.layout)
        return stream

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux encoded video, repairing impossible decode times: FFmpeg's libx265 wrapper gives a
        2-frame stream's dts from uninitialised memory (off by ~1e11), which the MP4/MOV muxer then refuses after
        the whole edit ("pts/dts pair unsupported"). Such a dts becomes the one after the last, never past pts."""
        for packet in packets:
            if None not in (packet.pts, packet.dts) and not 0 <= packet.pts - packet.dts <= _MOST_REORDER_FRAMES:
                packet.dts = packet.pts if self._last_dts is None else min(packet.pts, self._last_dts + 1)
            if packet.dts is not None:
                self._last_dts = packet.dts
            self._container.mux(packet)

    def _mux_audio(self, seconds: Fraction) -> None:
        for feed, stream in zip(self.audio, self._audio_streams, strict=True):
            for frame in feed.frames_until(seconds):
                self._container.mux(stream.encode(frame))

    def write(self, frames: np.ndarray) -> list[Path]:
        try:
            self._check_size(frames)
            if self._container is None:
                height, width = frames.shape[1:3]
                self._check_codec_size(width, height)
                self._start(width, height)
            options = encode_options(self.colour)
            for pixels in frames:
                frame = rgb_frame(pixels).reformat(format=self._stream.pix_fmt, interpolation=_SCALE, **options)
                tag(frame, self.colour)  # the output's tags, not swscale's (an untagged source stays untagged)
                frame.pts, frame.time_base = self.frames, 1 / self.fps
                self._mux_video(self._stream.encode(frame))
                self.frames += 1
            self._mux_audio(Fraction(self.frames) / self.fps)
        except BaseException as error:
            self.abort()
            _reraise(error, self.path, self.format.label)
        return []

    def close(self) -> list[Path]:
        if self._closed is not None:
            return list(self._closed)
        if self._container is None or self.frames == 0:
            self.abort()
            raise InvalidArgument(f"no frames were written to {self.path}")
        try:
            self._mux_video(self._stream.encode(None))
            self._mux_audio(Fraction(self.frames) / self.fps)  # the audio ends with the last frame written
            for stream in self._audio_streams:
                self._container.mux(stream.encode(None))
            self._container.close()
            self._container = None
            replace_with(self._temp, self.path, fsync=False)
            self._temp = None
        except BaseException as error:
            self.abort()
            _reraise(error, self.path, self.format.label)
        finally:
            for feed in self.audio:
                feed.close()
        self._closed = [self.path]
        return [self.path]

    def abort(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None
        for feed in self.audio:
            feed.close()


def sequence_audio_path(pattern: Path, number: int = 1) -> Path:
    """The WAV of audio stream `number` (from 1) beside a frame sequence: shot_%04d.exr -> shot_####.wav,
    shot_####.2.wav; each pattern its own, as its sidecar (shot.%04d.exr in the same folder: shot.####.wav)."""
    if frame_pattern(pattern) is None:
        raise InvalidArgument(f"{pattern} has no frame number (%04d)")
    stem = hashed_pattern(pattern)
    if pattern.suffix and stem.endswith(pattern.suffix):
        stem = stem[: -len(pattern.suffix)]
    return pattern.with_name(f"{stem}.wav" if number == 1 else f"{stem}.{number}.wav")


class FrameSequenceWriter(ClipWriter):
    """One file per frame (EXR half float in linear light, 16-bit PNG or TIFF), numbered by its source frame, and a
    WAV per kept audio stream beside them, written on `close()`."""

    def __init__(
        self,
        pattern: Path,
        fmt: OutputFormat,
        fps: Fraction,
        *,
        first_frame: int = 0,
        transfer: str | None = None,
        audio: Sequence[AudioFeed] = (),
    ) -> None:
        super().__init__(pattern, fmt, fps)
        if not fmt.sequence or fmt.codec not in FRAME_CODECS:
            raise InvalidArgument(f"{fmt.label} is not a frame sequence format")
        frame_path(self.path, 0)  # a pattern without a frame number fails here, before any work
        if first_frame < 0:
            raise InvalidArgument(f"first frame number {first_frame} is negative")
        self.codec = FRAME_CODECS[fmt.codec]
        self.first_frame = first_frame
        self.transfer = transfer
        self.audio = list(audio)
        self._written: list[Path] = []

    def _encode(self, pixels: np.ndarray) -> bytes:
        height, width = pixels.shape[:2]
        if self.codec.encoder == "exr":
            linear = to_linear(_unit_float(pixels), self.transfer)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(linear), format="gbrpf32le")
        else:
            frame = av.VideoFrame.from_ndarray(_sixteen_bit(pixels), format="rgb48le")
            if frame.format.name != self.codec.pix_fmt:
                frame = frame.reformat(format=self.codec.pix_fmt)
        context = av.CodecContext.create(self.codec.encoder, "w")
        context.width, context.height, context.pix_fmt = width, height, self.codec.pix_fmt
        context.time_base = 1 / self.fps
        context.options = dict(self.codec.options)
        frame.pts = 0
        packets = context.encode(frame) + context.encode(None)
        return b"".join(bytes(packet) for packet in packets)

    def write(self, frames: np.ndarray) -> list[Path]:
        now: list[Path] = []
        target = self.path
        try:
            self._check_size(frames)
            if self._size is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._size = (frames.shape[2], frames.shape[1])
            for pixels in frames:
                target = frame_path(self.path, self.first_frame + self.frames)
                data = self._encode(pixels)
                with atomic_path(target, suffix=f".part{target.suffix}", fsync=False) as temp:
                    temp.write_bytes(data)
                self._written.append(target)
                now.append(target)
                self.frames += 1
        except BaseException as error:
            self.abort()
            _reraise(error, target, self.format.label)
        return now

    def _write_wav(self, feed: AudioFeed, target: Path) -> None:
        with (
            atomic_path(target, suffix=".part.wav", fsync=False) as temp,
            av.open(str(temp), mode="w", format="wav") as container,
        ):
            stream = container.add_stream(pcm_codec(feed.codec), rate=feed.rate, layout=feed.layout)
            for frame in feed.frames_until(Fraction(self.frames) / self.fps):
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        self._written.append(target)

    def close(self) -> list[Path]:
        if self._closed is not None:
            return list(self._closed)
        if self.frames == 0:
            self.abort()
            raise InvalidArgument(f"no frames were written to {self.path}")
        target = self.path
        try:
            for number, feed in enumerate(self.audio, start=1):
                target = sequence_audio_path(self.path, number)
                self._write_wav(feed, target)
        except BaseException as error:
            self.abort()
            _reraise(error, target, self.format.label)
        finally:
            for feed in self.audio:
                feed.close()
        self._closed = list(self._written)
        return list(self._written)

    def abort(self) -> None:
        """Remove every frame and WAV this writer wrote (temporaries never outlive their write)."""
        for path in self._written:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self._written = []
        for feed in self.audio:
            feed.close()


def check_codec_size(fmt: OutputFormat, width: int, height: int, path: Path) -> None:
    """Refuse, before any work, the sizes an encoder cannot write correctly (no padding: the take keeps the
    source's size, or is not written). `media.resolve` calls it at submit; the writer again when it opens.
    The limits are the contract's (`v2vz.api.formats.SIZE_LIMITS`)."""
    check_size(fmt, width, height, path)


def output_timecode(source: MediaInfo, first_frame: int, fps: Fraction) -> str | None:
    """The source's start timecode moved on to `first_frame` (drop-frame stays drop-frame); None without one."""
    if not source.timecode:
        return None
    try:
        return add_frames(source.timecode, first_frame, fps)
    except InvalidArgument as error:
        log.warning("%s: its timecode is not carried over (%s)", source.path, error)
        return None


def source_audio(source: MediaInfo, fps: Fraction, first_frame: int, frame_count: int) -> list[AudioFeed]:
    """Every audio stream of a video source, in order, cut to the edited range (none for an image sequence)."""
    if source.is_sequence or not source.has_audio:
        return []
    return [TrimmedAudio(source.path, track, fps, first_frame, frame_count) for track in audio_tracks(source.path)]


def open_writer(
    path: Path,
    fmt: OutputFormat,
    fps: Fraction,
    source: MediaInfo,
    *,
    first_frame: int,
    frame_count: int,
    audio: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> ClipWriter:
    """The writer of an edit of `source` frames first_frame..first_frame+frame_count-1 to `path` as `fmt`.

    Video files carry the source's audio (unless `audio` is False), timecode, colour tags and `metadata` as container
    tags; frame sequences are numbered by source frame, EXR linearized by the source's transfer curve, and the audio
    goes to a WAV per stream beside them.
    """
    if first_frame < 0 or frame_count < 1:
        raise InvalidArgument(f"frames {first_frame}.. (count {frame_count}) are not a range of frames")
    feeds = source_audio(source, fps, first_frame, frame_count) if audio else []
    if fmt.sequence:
        return FrameSequenceWriter(
            Path(path), fmt, fps, first_frame=first_frame, transfer=source.colour.transfer, audio=feeds
        )
    return VideoFileWriter(
        Path(path),
        fmt,
        fps,
        size=(source.width, source.height) if source.width > 0 and source.height > 0 else None,
        colour_tags=source.colour,
        start_timecode=output_timecode(source, first_frame, fps),
        metadata=metadata,
        audio=feeds,
    )
