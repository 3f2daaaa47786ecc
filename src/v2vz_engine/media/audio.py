"""Audio for an edit's output: the source's own sound for exactly the edited range, or a test tone.

An edit of video frames first..first+count-1 keeps the audio that plays with them: the samples from
first/fps to (first+count)/fps after the video's first frame, cut at the sample (not at the codec's packet), with the
first kept sample at time 0 beside the first written frame. Where the source's audio starts late or ends early the
range is filled with silence, so every output's audio lasts exactly as long as its video.

A feed is pulled a little at a time (`frames_until`), so a writer interleaves sound with the frames it is given and
never holds a long clip's audio in memory.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from v2vz.api.errors import MediaError, MediaNotFound

_SILENCE_CHUNK = 4096  # samples per channel of each block of silence that pads a range
_SEEK_MARGIN = Fraction(1)  # seconds decoded before the range: codecs with overlapping frames (AAC) settle in it
# PCM kept as the source's own depth; anything else (AAC, MP3, Opus...) becomes 24-bit PCM in MOV and WAV.
_PCM_DEPTHS = {
    "pcm_s16le": "pcm_s16le",
    "pcm_s16be": "pcm_s16le",
    "pcm_s24le": "pcm_s24le",
    "pcm_s24be": "pcm_s24le",
    "pcm_s32le": "pcm_s32le",
    "pcm_s32be": "pcm_s32le",
    "pcm_f32le": "pcm_f32le",
    "pcm_f32be": "pcm_f32le",
    "pcm_f64le": "pcm_f64le",
    "pcm_f64be": "pcm_f64le",
}
DEFAULT_PCM = "pcm_s24le"


def ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's own reason without the errno and path noise, on one line."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream of a source: its position among the audio streams, rate, channel layout and codec."""

    index: int
    rate: int
    layout: str
    codec: str


def pcm_codec(source_codec: str) -> str:
    """The PCM codec an audio stream is written with in MOV and WAV: its own depth if it is PCM, else 24-bit."""
    return _PCM_DEPTHS.get(source_codec, DEFAULT_PCM)


def audio_tracks(path: Path) -> list[AudioTrack]:
    """The audio streams of a video file, in order (none for a file without sound)."""
    try:
        with av.open(str(path)) as container:
            return [
                AudioTrack(index, stream.codec_context.sample_rate, stream.codec_context.layout.name, stream.name)
                for index, stream in enumerate(container.streams.audio)
                if stream.codec_context.sample_rate > 0
            ]
    except FileNotFoundError as error:
        raise MediaNotFound(f"{path} does not exist; check the path") from error
    except (av.FFmpegError, OSError) as error:
        raise MediaError(f"{path} cannot be read for its audio ({ffmpeg_reason(error)}); export it again") from error


def _planar(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's samples as (channels, samples), whatever its layout in memory."""
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        return samples
    return samples.reshape(frame.samples, -1).T


class AudioFeed:
    """Sound for a writer, pulled a little at a time as planar frames whose pts count samples from 0."""

    rate: int
    layout: str
    codec: str  # the source's codec, which picks the PCM depth of a MOV or WAV

    def __init__(self, rate: int, layout: str, codec: str, samples: int) -> None:
        self.rate, self.layout, self.codec = rate, layout, codec
        self.samples = samples  # how many samples per channel the feed gives in all
        self.produced = 0
        self._chunks: Generator[tuple[np.ndarray, str], None, None] | None = None
        self._pending: tuple[np.ndarray, str] | None = None  # the rest of a block cut at the last call's limit

    def _generate(self) -> Generator[tuple[np.ndarray, str], None, None]:
        """(channels, n) sample blocks in a planar sample format, `self.samples` in all."""
        raise NotImplementedError

    def frames_until(self, seconds: Fraction | None = None) -> Iterator[av.AudioFrame]:
        """Frames up to `seconds` into the output (None: to the end), continuing where the last call stopped;
        a block that crosses the limit is cut at the sample."""
        limit = self.samples if seconds is None else min(self.samples, math.ceil(seconds * self.rate))
        if self._chunks is None:
            self._chunks = self._generate()
        while self.produced < limit:
            chunk, self._pending = self._pending or next(self._chunks, None), None
            if chunk is None:
                return
            samples, sample_format = chunk
            room = limit - self.produced
            if samples.shape[1] > room:
                samples, self._pending = samples[:, :room], (samples[:, room:], sample_format)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format, layout=self.layout)
            frame.sample_rate, frame.time_base, frame.pts = self.rate, Fraction(1, self.rate), self.produced
            self.produced += samples.shape[1]
            yield frame

    def close(self) -> None:
        """Release what the feed holds open (the source container of a trimmed stream)."""
        if self._chunks is not None:
            with contextlib.suppress(Exception):
                self._chunks.close()
            self._chunks = None
        self._pending = None


class TrimmedAudio(AudioFeed):
    """One audio stream of a source, cut to the samples that play with video frames first..first+count-1."""

    def __init__(self, path: Path, track: AudioTrack, fps: Fraction, first_frame: int, frame_count: int) -> None:
        self.path, self.track = Path(path), track
        fps = Fraction(fps)
        # both ends rounded on the one sample clock, so consecutive ranges would join without a gap or a repeat
        self._start = round(Fraction(first_frame) / fps * track.rate)
        stop = round(Fraction(first_frame + frame_count) / fps * track.rate)
        super().__init__(track.rate, track.layout, track.codec, stop - self._start)

    def _error(self, error: BaseException) -> MediaError:
        return MediaError(
            f"{self.path}: audio stream {self.track.index + 1} cannot be decoded ({ffmpeg_reason(error)}); "
            "export the clip again, or edit without its audio"
        )

    def _decoded(self, seek: bool) -> Iterator[tuple[int, np.ndarray, str]]:
        """(first sample on the video's clock, (channels, n) samples, planar format) of each decoded frame."""
        with av.open(str(self.path)) as container:
            stream = container.streams.audio[self.track.index]
            video = container.streams.video[0] if container.streams.video else None
            zero = (video.start_time or 0) * video.time_base if video is not None and video.time_base else 0
            origin = round(Fraction(zero) * self.rate)  # the video's first frame, in samples of this stream
            if seek and stream.time_base:
                target = Fraction(self._start, self.rate) + Fraction(zero) - _SEEK_MARGIN
                container.seek(max(0, int(target / stream.time_base)), backward=True, stream=stream)
            counted = None
            for packet in container.demux(stream):
                for frame in packet.decode():
                    if frame.pts is not None and frame.time_base:
                        position = round(frame.pts * frame.time_base * self.rate) - origin
                    else:
                        position = counted if counted is not None else -origin
                    counted = position + frame.samples
                    yield position, _planar(frame), frame.format.planar.name

    def _frames(self) -> Iterator[tuple[int, np.ndarray, str]]:
        """Decoded frames from just before the range: a seek where it helps, from the start where it lands late."""
        seek = self._start > 2 * _SEEK_MARGIN * self.rate
        frames = self._decoded(seek)
        first = next(frames, None)
        if seek and (first is None or first[0] > self._start):
            frames.close()
            frames = self._decoded(False)
            first = next(frames, None)
        if first is not None:
            yield first
            yield from frames

    def _generate(self) -> Generator[tuple[np.ndarray, str], None, None]:
        cursor, stop = self._start, self._start + self.samples
        channels, sample_format, dtype = None, "fltp", np.dtype(np.float32)
        try:
            for position, samples, sample_format in self._frames():
                channels, dtype = samples.shape[0], samples.dtype
                if position >= stop:
                    break
                if position > cursor:  # the stream starts late or has a gap: silence keeps the sync
                    yield from _silence(position - cursor, channels, dtype, sample_format)
                    cursor = position
                end = position + samples.shape[1]
                if end <= cursor:
                    continue
                keep = samples[:, cursor - position : min(end, stop) - position]
                yield keep, sample_format
                cursor += keep.shape[1]
                if cursor >= stop:
                    return
        except av.FFmpegError as error:
            raise self._error(error) from error
        if cursor < stop:  # the stream ends before the range does
            yield from _silence(stop - cursor, channels or _channel_count(self.layout), dtype, sample_format)


class ToneAudio(AudioFeed):
    """A steady sine (440 Hz left, 660 Hz right in stereo): sound for the sample clip."""

    def __init__(self, seconds: Fraction, rate: int = 48000, layout: str = "stereo", level: float = 0.25) -> None:
        super().__init__(rate, layout, "pcm_f32le", round(Fraction(seconds) * rate))
        self.level = level

    def _generate(self) -> Generator[tuple[np.ndarray, str], None, None]:
        channels = _channel_count(self.layout)
        pitches = np.array([440.0 * (1 + 0.5 * (index % 2)) for index in range(channels)])[:, None]
        for start in range(0, self.samples, _SILENCE_CHUNK):
            t = np.arange(start, min(start + _SILENCE_CHUNK, self.samples)) / self.rate
            yield (self.level * np.sin(2 * np.pi * pitches * t[None, :])).astype(np.float32), "fltp"


def _channel_count(layout: str) -> int:
    return len(av.AudioLayout(layout).channels)


def _silence(count: int, channels: int, dtype: np.dtype, sample_format: str) -> Iterator[tuple[np.ndarray, str]]:
    value = 128 if sample_format.startswith("u8") else 0
    for start in range(0, count, _SILENCE_CHUNK):
        yield np.full((channels, min(_SILENCE_CHUNK, count - start)), value, dtype=dtype), sample_format
