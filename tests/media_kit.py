"""Real clips for media tests, synthesized with PyAV alone (not with the writers under test).

`make_clip` writes an MP4 or MOV of any size (odd ones too) and frame rate, with audio streams whose samples are
known (`audio_signal`), a start timecode and colour tags; the pixels are encoded with the matrix and range the tags
name, so a reader that honours the tags gets `CLIP_RGB` back.

`write_mp4` is the one exception: given frames as an H.264 MP4 through the engine's own writer, for tests that need
a clip of known pixels and are not about the writer (it was the engine's until only tests used it).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from v2vz.api.formats import OutputFormat
from v2vz_engine.media.writers import VideoFileWriter, check_frames

CLIP_RGB = (200, 40, 60)  # a saturated colour: BT.601 and BT.709 decode it visibly differently
CLICKS = (1000, 7000, 13000)  # samples of the "clicks" signal that are not silent
MP4_H264 = OutputFormat(container="mp4", codec="h264", sequence=False)

# code points (ISO/IEC 23091-2) and the swscale matrix of each tag set a test asks for
COLOUR_TAGS = {
    "bt709-limited": {"primaries": 1, "trc": 1, "matrix": 1, "range": 1},
    "bt709-full": {"primaries": 1, "trc": 1, "matrix": 1, "range": 2},
    "bt601-limited": {"primaries": 6, "trc": 6, "matrix": 6, "range": 1},
}
_SWS = {1: Colorspace.ITU709, 6: Colorspace.ITU601, 5: Colorspace.ITU601}


@dataclass(frozen=True)
class AudioSpec:
    """One audio stream: rate, channels, codec (pcm_s16le keeps samples exact; aac is lossy), its signal, and how
    many samples after the first video frame it starts (a MOV keeps such a delay exactly)."""

    rate: int = 48000
    channels: int = 2
    codec: str = "pcm_s16le"
    signal: str = "ramp"  # "ramp": every sample tells its position; "clicks": silence with CLICKS
    delay: int = 0


def audio_signal(spec: AudioSpec, count: int) -> np.ndarray:
    """The (channels, count) float32 samples a stream of `spec` holds, in [-1, 1].

    "ramp" is exact in 16 bits: channel 0 a sawtooth ((n % 60000) - 30000) / 32768, channel 1 a counter of its
    periods, further channels the sawtooth negated, so a stereo sample tells its own position; "clicks" is silence
    with one loud sample at each of CLICKS.
    """
    n = np.arange(count)
    if spec.signal == "ramp":
        fast = ((n % 60000) - 30000).astype(np.float32) / 32768
        slow = ((n // 60000) * 64 - 30000).astype(np.float32) / 32768
        rows = [fast if c == 0 else slow if c == 1 else -fast for c in range(spec.channels)]
        return np.stack(rows)
    base = np.zeros(count, dtype=np.float32)
    base[[c for c in CLICKS if c < count]] = 0.9
    return np.repeat(base[None, :], spec.channels, axis=0)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1"}[channels]


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    fps: Fraction = Fraction(24),
    frames: int = 8,
    audio: tuple[AudioSpec, ...] = (),
    timecode: str | None = None,
    colour: str | None = None,
    rgb: tuple[int, int, int] = CLIP_RGB,
) -> Path:
    """An H.264 clip (MP4 or MOV by suffix) of flat `rgb` frames with a moving bar, plus `audio` streams."""
    width, height = size
    fps = Fraction(fps)
    tags = COLOUR_TAGS[colour] if colour else None
    with av.open(str(path), mode="w") as container:
        if timecode:
            container.metadata["timecode"] = timecode
        video = container.add_stream("libx264", rate=fps, options={"crf": "10"})
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p"  # any size, and no chroma blur on the test colour
        video.codec_context.time_base = 1 / fps
        if tags:
            context = video.codec_context
            context.color_primaries, context.color_trc = tags["primaries"], tags["trc"]
            context.colorspace, context.color_range = tags["matrix"], tags["range"]
        streams = []
        for spec in audio:
            stream = container.add_stream(spec.codec, rate=spec.rate, layout=_layout(spec.channels))
            streams.append((spec, stream))
        for index in range(frames):
            pixels = np.empty((height, width, 3), dtype=np.uint8)
            pixels[:] = rgb
            pixels[:, (index * 3) % width] = (255, 255, 255)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if tags:
                frame = frame.reformat(
                    format="yuv444p",
                    dst_colorspace=_SWS[tags["matrix"]],
                    dst_color_range=ColorRange.JPEG if tags["range"] == 2 else ColorRange.MPEG,
                )
            frame.pts, frame.time_base = index, 1 / fps
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for spec, stream in streams:
            count = round(Fraction(frames) / fps * spec.rate)
            samples = audio_signal(spec, count)
            for start in range(0, count, 1024):
                chunk = np.ascontiguousarray(samples[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=_layout(spec.channels))
                frame.sample_rate, frame.time_base = spec.rate, Fraction(1, spec.rate)
                frame.pts = spec.delay + start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return path


def read_audio(path: Path, index: int = 0) -> tuple[np.ndarray, int]:
    """Audio stream `index` of a file as (channels, samples) float64 in [-1, 1], and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        blocks = []
        for frame in container.decode(stream):
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(frame.samples, -1).T
            blocks.append(samples.astype(np.float64) / _FULL_SCALE.get(frame.format.planar.name, 1.0))
        return np.concatenate(blocks, axis=1), stream.codec_context.sample_rate


_FULL_SCALE = {"s16p": 32768.0, "s32p": 2147483648.0}


def exr_channel_types(path: Path) -> dict[str, int]:
    """The pixel type of each channel of an EXR file (0 uint, 1 half, 2 float), read from its header."""
    data = path.read_bytes()
    at = data.index(b"channels\x00chlist\x00") + len(b"channels\x00chlist\x00")
    size = int.from_bytes(data[at : at + 4], "little")
    chlist, types = data[at + 4 : at + 4 + size], {}
    while chlist and chlist[0] != 0:
        name, _, chlist = chlist.partition(b"\x00")
        types[name.decode()] = int.from_bytes(chlist[:4], "little")
        chlist = chlist[16:]
    return types


def write_mp4(frames: np.ndarray, path: str | Path, fps: Fraction) -> Path:
    """Write H.264 MP4 at exactly `fps` and the frames' own size, without audio; readers never see a partial file."""
    check_frames(frames)
    with VideoFileWriter(Path(path), MP4_H264, Fraction(fps)) as writer:
        writer.write(frames)
    return writer.path
