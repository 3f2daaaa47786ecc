"""Frames as arrays: the working size, resizing, and numbered PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from v2vz.api.errors import InvalidArgument
from v2vz.api.files import atomic_path

_RESIZE_CHUNK = 16  # frames per interpolate call: bounds the float32 copy of a long 4K clip


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


def check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise InvalidArgument(f"frames must be shaped (frames, height, width, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise InvalidArgument(f"frames must be uint8, got {frames.dtype}")


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 (F, H, W, 3) frames; antialiased bicubic so downscaled frames do not alias."""
    check_frames(frames)
    if width < 1 or height < 1:
        raise InvalidArgument(f"target size {width}x{height} must be positive")
    if frames.shape[1:3] == (height, width):
        return frames.copy()
    if not frames.flags.writeable:  # e.g. a cluster worker's result, mapped read-only from Ray's object store
        frames = frames.copy()
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i in range(0, frames.shape[0], _RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[i : i + _RESIZE_CHUNK])).permute(0, 3, 1, 2)
        resized = F.interpolate(chunk.float(), size=(height, width), mode="bicubic", antialias=True)
        out[i : i + _RESIZE_CHUNK] = resized.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def write_png_frames(
    frames: np.ndarray, folder: str | Path, first_index: int = 0, prefix: str = "frame_"
) -> list[Path]:
    """Write numbered PNGs (prefix + 6-digit index), each atomically; returns the paths in order."""
    check_frames(frames)
    if first_index < 0:
        raise InvalidArgument(f"first frame number {first_index} is negative")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, pixels in enumerate(frames):
        path = folder / f"{prefix}{first_index + offset:06d}.png"
        with atomic_path(path, suffix=".part.png", fsync=False) as temp:
            Image.fromarray(pixels, mode="RGB").save(temp, format="PNG")
        paths.append(path)
    return paths


def write_masks(weight: np.ndarray, paths: list[Path]) -> list[Path]:
    """A local edit's weight, float (F, H, W) in 0..1, as 8-bit grey PNGs at `paths` (each written atomically)."""
    if len(weight) != len(paths):
        raise ValueError(f"{len(weight)} masks for {len(paths)} paths")
    grey = np.clip(np.rint(np.asarray(weight, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    for pixels, path in zip(grey, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".part.png", fsync=False) as temp:
            Image.fromarray(pixels, mode="L").save(temp, format="PNG")
    return list(paths)
