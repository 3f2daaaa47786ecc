"""Video I/O with PyAV: probe clips, read exact frame ranges, resize, and write MP4/PNG results atomically.

Frame indices are 0-based positions in display order. Reads seek to a keyframe and decode forward, yet give
the same pixels as decoding from the start, so editing frames 200..207 of a long clip stays cheap.
Every error is a `v2vz.errors` exception with one line that names the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from v2vz.errors import InvalidArgument, MediaError, MediaNotFound, RangeError

_RESIZE_CHUNK = 16  # frames per interpolate call: bounds the float32 copy of a long 4K clip


@dataclass(frozen=True)
class VideoInfo:
    """What the engine needs to know about a clip before reading it."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    has_audio: bool


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


DEFAULT_SEQUENCE_FPS = Fraction(24)  # an image sequence carries no frame rate; a job can give its own


def is_image_sequence(path: str | Path) -> bool:
    """A folder of images or an image file (a numbered sequence from that file on, or a still)."""
    from v2vz_daemon.engine import image_sequence

    return image_sequence.is_image_source(Path(path).expanduser())


def probe(path: str | Path) -> VideoInfo:
    """Describe a clip: size, exact frame rate (a Fraction, so 30000/1001 stays exact), frames and audio.

    An image sequence (see image_sequence.py) is described too, at DEFAULT_SEQUENCE_FPS and without audio.
    """
    path = Path(path).expanduser()
    if path.exists() and is_image_sequence(path):
        from v2vz_daemon.engine import image_sequence

        files, width, height = image_sequence.probe_sequence(path)
        return VideoInfo(path, width, height, DEFAULT_SEQUENCE_FPS, len(files), has_audio=False)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        if not fps or fps <= 0:
            raise MediaError(f"{path} does not say its frame rate; export it again at a constant frame rate")
        frame_count = stream.frames
        if frame_count <= 0:  # some containers (MKV, WebM, raw streams) do not store it: count
            try:
                frame_count = sum(1 for _ in container.decode(stream))
            except av.FFmpegError as error:
                raise _decode_error(path, error) from error
        if frame_count <= 0:
            raise MediaError(f"{path} contains no decodable video frames; export it again")
        return VideoInfo(
            path=path,
            width=stream.width,
            height=stream.height,
            fps=Fraction(fps),
            frame_count=frame_count,
            has_audio=bool(container.streams.audio),
        )


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _decode_sequential(path: Path, start: int, count: int) -> Iterator[np.ndarray]:
    """Decode from the very first frame, counting frames: the reference meaning of a frame index."""
    with _open(path) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index >= start + count:
                break
            if index >= start:
                yield _rgb(frame)


def _decode_seeking(path: Path, start: int, count: int, fps: Fraction) -> Iterator[np.ndarray]:
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
                yield _rgb(frame)
                wanted += 1
                if wanted == start + count:
                    return
            if landed:
                return  # the stream ended early
            back = max(8, back * 4)


def check_range(info: VideoInfo, start: int, count: int) -> None:
    """Raise a one-line error unless frames start..start+count-1 all exist in the clip."""
    if start < 0:
        raise InvalidArgument(f"start frame {start} is negative; frames are numbered from 0")
    if count < 1:
        raise InvalidArgument(f"frame count {count} must be at least 1")
    last = start + count - 1
    if last >= info.frame_count:
        raise RangeError(
            f"frames {start}..{last} are outside {info.path} ({info.frame_count} frames, 0..{info.frame_count - 1})"
        )


def iter_frames(path: str | Path, start: int, count: int, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Frames start..start+count-1 one at a time as uint8 RGB (H, W, 3), decoding only from the nearest keyframe.

    One container stays open while the caller consumes frames, so a long range is decoded once and never held in
    memory as a whole (windowed edits read a window at a time). Errors come as one-line V2vzError exceptions.
    """
    if start < 0 or count < 1:
        check_range(VideoInfo(Path(path), 0, 0, Fraction(1), 0, False), start, count)
    info = info or probe(path)  # a caller that probed already saves a second probe (a frame count may mean a decode)
    check_range(info, start, count)
    if is_image_sequence(info.path):
        from v2vz_daemon.engine import image_sequence

        files = image_sequence.sequence_files(info.path)
        yield from image_sequence.iter_sequence_frames(files, start, count, info.width, info.height)
        return
    done = 0
    try:
        for pixels in _decode_seeking(info.path, start, count, info.fps):
            yield pixels
            done += 1
        if done < count:  # not seekable, or untrustworthy timestamps: count frames from the start
            for pixels in _decode_sequential(info.path, start + done, count - done):
                yield pixels
                done += 1
    except av.FFmpegError as error:
        raise _decode_error(info.path, error) from error
    if done < count:
        raise MediaError(
            f"{info.path} says it has {info.frame_count} frames but frames {start}..{start + count - 1} could not "
            "all be decoded; the file looks truncated, export it again"
        )


def read_frames(path: str | Path, start: int, count: int) -> tuple[np.ndarray, VideoInfo]:
    """Frames start..start+count-1 as uint8 RGB (count, H, W, 3), decoding only from the nearest keyframe."""
    if start < 0 or count < 1:
        check_range(VideoInfo(Path(path), 0, 0, Fraction(1), 0, False), start, count)
    info = probe(path)
    return np.stack(list(iter_frames(path, start, count, info))), info


def working_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) with the aspect ratio kept and both sides multiples of 8, as the diffusion model needs."""
    if width < 1 or height < 1:
        raise InvalidArgument(f"frame size {width}x{height} must be positive")
    if long_side < 1:
        raise InvalidArgument(f"working size {long_side} must be positive")

    def to8(value: float) -> int:
        return max(8, int(value / 8 + 0.5) * 8)

    target = to8(long_side)
    if width >= height:
        return target, to8(height * target / width)
    return to8(width * target / height), target


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise InvalidArgument(f"frames must be shaped (frames, height, width, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise InvalidArgument(f"frames must be uint8, got {frames.dtype}")


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 (F, H, W, 3) frames; antialiased bicubic so downscaled frames do not alias."""
    _check_frames(frames)
    if width < 1 or height < 1:
        raise InvalidArgument(f"target size {width}x{height} must be positive")
    if frames.shape[1:3] == (height, width):
        return frames.copy()
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i in range(0, frames.shape[0], _RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[i : i + _RESIZE_CHUNK])).permute(0, 3, 1, 2)
        resized = F.interpolate(chunk.float(), size=(height, width), mode="bicubic", antialias=True)
        out[i : i + _RESIZE_CHUNK] = resized.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _temp_beside(path: Path, suffix: str) -> Path:
    """A fresh hidden name in the target's folder, so os.replace onto the target is atomic."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


class Mp4Writer:
    """H.264 MP4 written a few frames at a time, at exactly `fps` and the frames' own size.

    A long edit never sits in memory whole, and readers never see a partial file: frames go to a hidden temporary
    name beside the target, which replaces it only when `close()` succeeds; `abort()` (or leaving a `with` block
    on an exception) deletes it.
    """

    def __init__(self, path: str | Path, fps: Fraction) -> None:
        fps = Fraction(fps)
        if fps <= 0:
            raise InvalidArgument(f"frame rate {fps} must be positive")
        self.path = Path(path).expanduser()
        self.fps = fps
        self.frames = 0
        self._temp: Path | None = None
        self._container = None
        self._stream = None

    def _start(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temp = _temp_beside(self.path, ".part.mp4")
        self._container = av.open(str(self._temp), mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self.fps, options={"crf": "18"})
        # 4:2:0 halves the chroma planes, so x264 refuses odd sizes; 4:4:4 keeps the exact source size.
        pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = 1 / self.fps
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 (F, H, W, 3) frames; every call must have the first call's size."""
        _check_frames(frames)
        _, height, width, _ = frames.shape
        try:
            if self._container is None:
                self._start(width, height)
            elif (width, height) != (self._stream.width, self._stream.height):
                first = f"{self._stream.width}x{self._stream.height}"
                raise InvalidArgument(f"frames of {width}x{height} cannot follow {first} ones in {self.path}")
            for pixels in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts, frame.time_base = self.frames, 1 / self.fps
                self._container.mux(self._stream.encode(frame))
                self.frames += 1
        except BaseException:
            self.abort()
            raise

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            raise InvalidArgument(f"no frames were written to {self.path}")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            os.replace(self._temp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop what was written; the target path is left as it was."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_mp4(frames: np.ndarray, path: str | Path, fps: Fraction) -> Path:
    """Write H.264 MP4 at exactly `fps` and the frames' own size; readers never see a partial file."""
    _check_frames(frames)
    with Mp4Writer(path, fps) as writer:
        writer.write(frames)
    return writer.path


def write_png_frames(
    frames: np.ndarray, folder: str | Path, first_index: int = 0, prefix: str = "frame_"
) -> list[Path]:
    """Write numbered PNGs (prefix + 6-digit index), each atomically; returns the paths in order."""
    _check_frames(frames)
    if first_index < 0:
        raise InvalidArgument(f"first frame number {first_index} is negative")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, pixels in enumerate(frames):
        path = folder / f"{prefix}{first_index + offset:06d}.png"
        temp = _temp_beside(path, ".part.png")
        try:
            Image.fromarray(pixels, mode="RGB").save(temp, format="PNG")
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def make_sample_clip(
    path: str | Path, frames: int = 24, width: int = 320, height: int = 192, fps: Fraction = Fraction(24)
) -> Path:
    """Write a deterministic demo clip (a ball crossing sky and ground): users can try edits without data."""
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
    return write_mp4(out, path, fps)
