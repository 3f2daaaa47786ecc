"""An editor's matte: which part of each frame a local edit may change (docs/media.md, "Local edits").

A matte is a video, an image sequence (a folder or its first numbered image) or one image; white = edit, black =
keep, greys are kept as soft edges. An image with an alpha channel gives its alpha, a video whose pixel format has
one (ProRes 4444, PNG or QuickTime Animation in a .mov) too. Frame i of the job's range uses the matte's frame
`matte_start + i`; a matte of one frame (a still) serves every frame. The matte is checked with the job
(`check_matte`, from media.resolve) and read a window at a time at the source's size (`read_matte`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from v2vz.api.errors import InvalidArgument, MediaError, RangeError
from v2vz.api.job import EditJob
from v2vz.media.image_sequence import sequence_files
from v2vz.media.info import MediaInfo
from v2vz.media.probe import decode_error, open_video, probe
from v2vz_engine.media.video import iter_video_frames, turn_upright

ASPECT_TOLERANCE = 0.01  # a matte whose aspect is within 1% of the source's is the same picture at another size
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclasses.dataclass(frozen=True)
class MatteCheck:
    """What resolving a job learnt of its matte: the probe, the digest the job records, and what to tell the user."""

    info: MediaInfo
    digest: str
    notes: tuple[str, ...] = ()


def check_matte(job: EditJob, source: MediaInfo) -> MatteCheck:
    """The job's matte against its range and its source, before any work: it exists and decodes, it covers the range
    (or is one image), and it has the source's aspect; another resolution is resampled (a note says so)."""
    if job.matte is None:
        raise ValueError("the job has no matte")
    path = Path(job.matte).expanduser()
    info = probe(path)
    if info.frame_count > 1 and job.matte_start + job.frames > info.frame_count:
        raise RangeError(
            f"the matte {path} has {info.frame_count} frames; the range needs {job.frames} from its frame "
            f"{job.matte_start} (through {job.matte_start + job.frames - 1}): give a matte as long as the range"
        )
    if info.frame_count == 1 and job.matte_start:
        raise InvalidArgument(f"the matte {path} is one image: it has no frame {job.matte_start}, drop --matte-start")
    matte_aspect, source_aspect = info.width / info.height, source.width / source.height
    if abs(matte_aspect / source_aspect - 1) > ASPECT_TOLERANCE:
        raise InvalidArgument(
            f"the matte {path} is {info.width}x{info.height} (aspect {matte_aspect:.3f}), the source "
            f"{source.width}x{source.height} (aspect {source_aspect:.3f}): give a matte of the source's shape"
        )
    return MatteCheck(info, _digest(info, job.matte_start, job.frames), _notes(info, source))


def matte_notes(job: EditJob, source: MediaInfo) -> list[str]:
    """What a user should know of a job's matte that was checked already: that it is resampled, if it is."""
    return [] if job.matte is None else list(_notes(probe(Path(job.matte).expanduser()), source))


def _notes(info: MediaInfo, source: MediaInfo) -> tuple[str, ...]:
    if (info.width, info.height) == (source.width, source.height):
        return ()
    return (
        f"the matte {info.path.name} is {info.width}x{info.height}: it is resampled to the source's "
        f"{source.width}x{source.height}",
    )


def _digest(info: MediaInfo, start: int, frames: int) -> str:
    """sha256 of the matte's bytes: the whole file, or the sequence's files the range uses, in order."""
    if info.is_sequence:
        files = sequence_files(info.path)
        files = files if len(files) == 1 else files[start : start + frames]
    else:
        files = [info.path]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 - read in the loop that opened it
                digest.update(block)
    return digest.hexdigest()


def read_matte(job: EditJob, info: MediaInfo, indices: Sequence[int], width: int, height: int) -> np.ndarray:
    """The matte of the job's frames `indices` (within the range) as float32 (F, height, width) in 0..1, at the
    source's size, feathered by the job's `matte_feather` (a Gaussian of that many source pixels)."""
    if info.frame_count == 1:
        frames = [_still(info)] * len(indices)
    elif info.is_sequence:
        files = sequence_files(info.path)
        frames = [_image(files[job.matte_start + index]) for index in indices]
    else:
        frames = _video(info, [job.matte_start + index for index in indices])
    matte = torch.from_numpy(np.stack(frames)).unsqueeze(1)
    if matte.shape[2:] != (height, width):
        matte = F.interpolate(matte, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    matte = feather(matte, job.options.matte_feather)
    return matte.squeeze(1).clamp(0, 1).numpy()


def feather(matte: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (F, 1, H, W) matte blurred by a Gaussian of `sigma` pixels (a separable convolution; 0: unchanged)."""
    if sigma <= 0:
        return matte
    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(matte, (radius, radius, 0, 0), mode="replicate")
    matte = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    padded = F.pad(matte, (0, 0, radius, radius), mode="replicate")
    matte = F.conv2d(padded, kernel.view(1, 1, -1, 1))
    # Far from an edge the sum of the taps' rounding is a few 1e-7 off: white stays 1 (an exact edit), black 0.
    return torch.where(matte > 1 - 1e-5, 1.0, torch.where(matte < 1e-5, 0.0, matte))


def _still(info: MediaInfo) -> np.ndarray:
    return _image(sequence_files(info.path)[0]) if info.is_sequence else _video(info, [0])[0]


def _image(path: Path) -> np.ndarray:
    """One matte image as float32 (H, W): its alpha if it has one, else its luminance."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in _SIXTEEN_BIT:
                return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0, 1)
            if mode == "F":
                return np.clip(np.asarray(image, dtype=np.float32), 0, 1)
            if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
                return np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise MediaError(f"the matte frame {path} cannot be read as an image ({error}); export it again") from error


def _video(info: MediaInfo, wanted: Sequence[int]) -> list[np.ndarray]:
    """Frames `wanted` (matte indices) of a video matte as float32 (H, W): alpha when its pixel format has one."""
    if _has_alpha(info.path):
        return _video_alpha(info, wanted)
    frames: list[np.ndarray] = []
    for first, count in _runs(wanted):  # one seek per run of consecutive frames
        frames += [_luminance(pixels) for pixels in iter_video_frames(info, first, count)]
    return frames


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive indices: [3, 4, 5, 9] -> [(3, 3), (9, 1)]."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and index == runs[-1][0] + runs[-1][1]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


def _luminance(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W) in 0..1, with Rec. 601's weights (what Pillow's "L" uses)."""
    return (pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0


def _has_alpha(path: Path) -> bool:
    with open_video(path) as container:
        name = container.streams.video[0].codec_context.pix_fmt or ""
    return name.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya", "pal8"))


def _video_alpha(info: MediaInfo, wanted: Sequence[int]) -> list[np.ndarray]:
    """A video matte's alpha, decoded from its first frame (mattes with alpha are short, intra-frame clips)."""
    want = set(wanted)
    found: dict[int, np.ndarray] = {}
    try:
        with open_video(info.path) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index in want:
                    alpha = frame.to_ndarray(format="rgba")[..., 3:]
                    found[index] = turn_upright(alpha, info.upright)[..., 0].astype(np.float32) / 255.0
                if len(found) == len(want):
                    break
    except av.FFmpegError as error:
        raise decode_error(info.path, error) from error
    missing = sorted(want - set(found))
    if missing:
        raise MediaError(f"the matte {info.path} ends before its frame {missing[0]}: export it again")
    return [found[index] for index in wanted]
